#!/usr/bin/env bash
# The test suite under sanitizers, on the CPU (CUDA off):
#   asan  AddressSanitizer + UndefinedBehaviorSanitizer (clang++, -DDOTS1_SANITIZE=address,undefined): the
#         normal test and example targets, the whole CTest suite. Any report aborts its test
#         (-fno-sanitize-recover). Clang rather than g++: its -fsanitize=undefined also checks float-to-int
#         overflow, and it can exempt one third-party header (an ignorelist; g++ has none, and the project's
#         -fno-sanitize-recover rules out runtime suppressions). Exempted from UBSan (not ASan): NVIDIA's
#         CCCL headers (Thrust, CUB), whose tag dispatch binds references to and upcasts null system pointers
#         (thrust/detail/reference.h:330, thrust/system/detail/generic/select_system.inl:75, reached from
#         thrust::stable_sort_by_key on the OpenMP device system in the Thrust backend's MoE). Our own code,
#         include/dots1/backend/thrust included, keeps every check.
#   tsan  ThreadSanitizer (clang++, -DDOTS1_SANITIZE=thread) on the tests that run our code on several threads:
#         the CPU backend's thread pool and OpenMP loops (test_cpu_kernels runs kernels on 2 threads;
#         test_embedded_model and test_chat_session run the kjv-tiny model, large enough for the backend's
#         parallel loops, which the tiny fixtures of test_reference_forward and test_generation mostly are
#         not), test_concurrent_sessions (six generation sessions on six threads sharing one model), the tokenizer's OpenMP encode_batch (test_tokenizer) and Thrust's OpenMP device system
#         (test_reference_forward_thrust_omp), with OMP_NUM_THREADS=4.
#
#   bash tests/run-sanitizers.sh          # both
#   bash tests/run-sanitizers.sh asan     # or: tsan
#
# OpenMP under ThreadSanitizer: the OpenMP runtime is not TSan-instrumented, so TSan cannot see its barriers
# and locks and can report the ordinary hand-over of data across them as races. The TSan build therefore
# uses clang with LLVM's libomp and loads Archer (libarcher.so, in libomp-14-dev) as an OMPT tool
# (OMP_TOOL_LIBRARIES), which tells TSan about every OpenMP synchronisation; with it, a report is a race in our
# own code (checked: a planted race in an OpenMP loop is reported, barrier- and reduction-separated phases
# are not). No suppressions are needed; should libomp-internal reports ever appear, add a suppressions
# file through TSAN_OPTIONS, but not called_from_lib:libomp.so, which would also hide our own code running
# inside OpenMP regions. Without Archer the TSan part refuses to run.
#
# Environment: DOTS1_SANITIZE_BUILD (build folders <it>-asan and <it>-tsan, default build/sanitize),
# DOTS1_JOBS, DOTS1_TSAN_TESTS (a CTest -R regex replacing the list above), DOTS1_CMAKE_ARGS (extra configure
# arguments for both builds).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
which=${1:-all}
prefix=$(realpath -m "${DOTS1_SANITIZE_BUILD:-$root/build/sanitize}")  # absolute: the ignorelist path is passed to clang
jobs=${DOTS1_JOBS:-$(nproc)}
read -r -a extra_cmake <<<"${DOTS1_CMAKE_ARGS:-}"
tsan_tests=${DOTS1_TSAN_TESTS:-^(test_concurrent_sessions|test_cpu_kernels|test_reference_forward|test_reference_forward_thrust_omp|test_embedded_model|test_chat_session|test_tokenizer|test_generation)$}
DOTS1_DEPS_SANITIZERS=1 bash "$root/cmake/install-deps.sh"
status=0

# The Release configuration (-march=x86-64-v3: the same SIMD code paths users run) at -O1 without NDEBUG:
# half the compile time of -O3 on a 2-core CI machine, and assertions (Eigen's included) stay on as extra
# checks. Line tables for the reports.
common=(-DCMAKE_BUILD_TYPE=Release "-DCMAKE_CXX_FLAGS_RELEASE=-O1" -DDOTS1_ENABLE_CUDA=OFF -DDOTS1_BUILD_TESTS=ON -DDOTS1_BUILD_EXAMPLES=ON)

if [[ $which == all || $which == asan ]]; then
  build=$prefix-asan
  mkdir -p "$build"
  ignorelist=$build/ubsan-ignorelist.txt
  [[ -f $ignorelist ]] || : >"$ignorelist"  # compiled against from the first configure check on
  cmake -S "$root" -B "$build" "${common[@]}" -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_CXX_FLAGS="-gline-tables-only -fsanitize-ignorelist=$ignorelist" \
    -DDOTS1_SANITIZE=address,undefined "${extra_cmake[@]}"
  # UBSan off in the CCCL headers only (the folder tests/thrust found; not our include/dots1/backend/thrust).
  cccl=$(sed -n 's/^DOTS1_CCCL_INCLUDE_DIR:PATH=//p' "$build/CMakeCache.txt")
  if [[ -n $cccl && $cccl != *NOTFOUND ]]; then
    printf '[undefined]\nsrc:%s/thrust/*\nsrc:%s/cub/*\nsrc:%s/cuda/*\n' "$cccl" "$cccl" "$cccl" >"$ignorelist.new"
    cmp -s "$ignorelist.new" "$ignorelist" && rm "$ignorelist.new" || mv "$ignorelist.new" "$ignorelist"  # clang's depfiles list it: a change rebuilds
  fi
  cmake --build "$build" -j "$jobs"
  echo "run-sanitizers: ASan + UBSan, whole suite"
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1} \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
    ctest --test-dir "$build" --output-on-failure -j "$jobs" | tee "$build/ctest.log" || status=1
fi

if [[ $which == all || $which == tsan ]]; then
  build=$prefix-tsan
  # Archer of the clang that builds (/usr/bin/clang++ -> /usr/lib/llvm-14/bin/clang).
  archer=$(dirname "$(readlink -f "$(command -v clang++)")")/../lib/libarcher.so
  if [[ ! -f $archer ]]; then
    echo "run-sanitizers: libarcher.so not found (install libomp-14-dev); without it TSan reports OpenMP's own synchronisation as races" >&2
    exit 1
  fi
  cmake -S "$root" -B "$build" "${common[@]}" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_CXX_FLAGS="-gline-tables-only" \
    -DDOTS1_SANITIZE=thread "${extra_cmake[@]}"
  mapfile -t targets < <(ctest --test-dir "$build" -N -R "$tsan_tests" | sed -n 's/^ *Test *#[0-9]*: \(.*\)$/\1/p')
  ((${#targets[@]})) || { echo "run-sanitizers: no test matches $tsan_tests" >&2; exit 1; }
  group=$(IFS=';'; echo "${targets[*]}")
  cmake "$build" -DDOTS1_TARGET_GROUP="$group" >/dev/null
  cmake --build "$build" -j "$jobs" --target dots1_target_group  # one make call: the executables build in parallel
  echo "run-sanitizers: TSan (Archer: $archer), ${targets[*]}"
  OMP_NUM_THREADS=${OMP_NUM_THREADS:-4} OMP_TOOL_LIBRARIES=$archer ARCHER_OPTIONS=${ARCHER_OPTIONS:-verbose=1} \
  TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:ignore_noninstrumented_modules=1} \
    ctest --test-dir "$build" --output-on-failure -R "$tsan_tests" | tee "$build/ctest.log" || status=1
fi
exit $status
