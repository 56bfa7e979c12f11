# The dots1 tool of a CUDA build links no CUDA library (its GPU model is the libdots1-cuda.so plugin, loaded
# on first use of --device cuda), while the plugin does. Arguments: -DTOOL=<dots1> -DPLUGIN=<libdots1-cuda.so>
execute_process(COMMAND ldd ${TOOL} OUTPUT_VARIABLE tool_libs RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "ldd ${TOOL} failed (${rc})")
endif()
if(tool_libs MATCHES "libcudart|libcublas|libcuda\\.")
  message(FATAL_ERROR "the dots1 tool links CUDA libraries directly:\n${tool_libs}")
endif()
execute_process(COMMAND ldd ${PLUGIN} OUTPUT_VARIABLE plugin_libs RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR NOT plugin_libs MATCHES "libcublas")
  message(FATAL_ERROR "the CUDA plugin ${PLUGIN} does not link cuBLAS (${rc}):\n${plugin_libs}")
endif()
message(STATUS "the tool links no CUDA library; its plugin links cuBLAS")
