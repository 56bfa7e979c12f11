# The compile-time variant (examples/compile_time_variant.cpp) built for the Eigen backend and, through its
# backend switch, for the Thrust backend on the OpenMP device system: both must print the same greedy
# tokens and cache sizes. Run as: cmake -DEIGEN=<exe> -DTHRUST=<exe> -P check_variant.cmake
foreach(which EIGEN THRUST)
  execute_process(COMMAND ${${which}} OUTPUT_VARIABLE out_${which} RESULT_VARIABLE rc_${which})
  if(NOT rc_${which} EQUAL 0)
    message(FATAL_ERROR "${${which}} failed (${rc_${which}}):\n${out_${which}}")
  endif()
  message(STATUS "${out_${which}}")
  string(REGEX REPLACE "^backend [^,]*, " "" out_${which} "${out_${which}}")  # the backend's name differs
endforeach()
if(NOT out_EIGEN STREQUAL out_THRUST)
  message(FATAL_ERROR "the Thrust variant differs from the Eigen one:\n${out_THRUST}\nvs\n${out_EIGEN}")
endif()
