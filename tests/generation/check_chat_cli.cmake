# CTest: drive `dots1 chat` through stdin (two messages around an empty line, then end of input) and check
# the rendered dots.llm1 conversation, the notices and the exit code. Variables: TOOL, MODEL, WORK_DIR.
file(MAKE_DIRECTORY "${WORK_DIR}")
file(WRITE "${WORK_DIR}/chat_input.txt" "Hello there\n\nWho was Moses?\n")
execute_process(COMMAND "${TOOL}" chat --model "${MODEL}" --system "Be brief." --greedy --max-new-tokens 6 --print-prompt
                INPUT_FILE "${WORK_DIR}/chat_input.txt" OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "dots1 chat exited with ${rc}: ${err}")
endif()
set(first "[conversation] <|system|>Be brief.<|endofsystem|><|userprompt|>Hello there<|endofuserprompt|><|response|>")
set(second "<|endofresponse|><|userprompt|>Who was Moses?<|endofuserprompt|><|response|>")
foreach(expected "${first}" "${second}" "(empty message ignored" "(end of input: goodbye)" "[cache] ")
  string(FIND "${err}" "${expected}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "stderr lacks '${expected}':\n${err}")
  endif()
endforeach()
# One answer per message (answers may span lines), each followed by its [cache] report.
string(REGEX MATCHALL "\\[cache\\] [0-9]+ tokens" reports "${err}")
list(LENGTH reports n)
if(NOT n EQUAL 2 OR out STREQUAL "")
  message(FATAL_ERROR "expected two answers, got ${n} cache reports; stdout:\n${out}")
endif()
