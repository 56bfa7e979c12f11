# Dots1Cuda.cmake — the CUDA toolchain for the Thrust backend's CUDA targets (option DOTS1_ENABLE_CUDA).
# Included from the top-level CMakeLists.txt (and, as a fallback, from tests/thrust/CMakeLists.txt):
# enables the CUDA language for nvcc, sm_90 code plus compute_90 PTX unless the caller chose
# CMAKE_CUDA_ARCHITECTURES, and finds the toolkit for CUDA::cublas.
include_guard(GLOBAL)

if(NOT DOTS1_ENABLE_CUDA)
  return()
endif()

if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES "90-real;90-virtual")  # H100/H200 binaries + PTX for newer GPUs
endif()
if(NOT DEFINED CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
  set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
endif()
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)

# dots1_cuda_target(TARGET): nvcc options for a dots1 program. The project's CXX warning flags
# (dots1_project_options) are GCC options nvcc would reject, so CUDA targets set their own.
function(dots1_cuda_target target)
  if(DEFINED CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
    set_target_properties(${target} PROPERTIES CUDA_STANDARD 20 CUDA_STANDARD_REQUIRED ON CUDA_EXTENSIONS OFF)
  else()  # CMake < 3.26 or so does not know nvcc's C++20 flag (nvcc >= 12 has it)
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-std=c++20>)
  endif()
  target_link_libraries(${target} PRIVATE dots1::dots1 CUDA::cublas CUDA::cudart)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra,-Wno-unused-parameter>)
endfunction()
