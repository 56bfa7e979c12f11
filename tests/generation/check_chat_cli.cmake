# CTest: drive `dots1 chat` through stdin and check the rendered dots.llm1 conversation, the notices and the
# exit code: two messages around an empty line, a message continued over two lines with a trailing
# backslash, /regenerate (greedy: the same answer), /undo (the cache back to the turn boundary), /help, a
# line of invalid UTF-8 (reported, the session goes on), then end of input. Variables: TOOL, MODEL, WORK_DIR.
file(MAKE_DIRECTORY "${WORK_DIR}")
string(ASCII 255 bad_byte)
file(WRITE "${WORK_DIR}/chat_input.txt"
     "Hello there\n\nWho was Moses?\n/regenerate\nAnd the\\\nLORD?\n/undo\n/help\nbad ${bad_byte} byte\n/undo\n/undo\n/undo\nAmen.\n")
file(READ "${WORK_DIR}/chat_input.txt" raw HEX)
if(NOT raw MATCHES "20ff20")
  message(FATAL_ERROR "the test input lacks the invalid byte 0xFF: ${raw}")
endif()
execute_process(COMMAND "${TOOL}" chat --model "${MODEL}" --system "Be brief." --greedy --max-new-tokens 6 --print-prompt
                INPUT_FILE "${WORK_DIR}/chat_input.txt" OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "dots1 chat exited with ${rc}: ${err}")
endif()
set(first "[conversation] <|system|>Be brief.<|endofsystem|><|userprompt|>Hello there<|endofuserprompt|><|response|>")
set(second "<|endofresponse|><|userprompt|>Who was Moses?<|endofuserprompt|><|response|>")
set(continued "<|userprompt|>And the\nLORD?<|endofuserprompt|><|response|>")
foreach(expected "${first}" "${second}" "${continued}" "(empty message ignored" "(last exchange undone; 2 left)"
                 "/regenerate  answer your last message again" "(message not sent: the message is not valid UTF-8: bad byte 0xFF at byte offset 4"
                 "(nothing to undo)" "(end of input: goodbye)" "[cache] ")
  string(FIND "${err}" "${expected}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "stderr lacks '${expected}':\n${err}")
  endif()
endforeach()
# One [cache] report per answer (Hello, Moses, its regeneration, the continued message, the final Amen.) and
# per /undo (4 of them, the last one with nothing to undo).
string(REGEX MATCHALL "\\[cache\\] [0-9]+ tokens" reports "${err}")
list(LENGTH reports n)
if(NOT n EQUAL 9)
  message(FATAL_ERROR "expected 9 cache reports, got ${n}:\n${err}")
endif()
list(GET reports 1 after_moses)
list(GET reports 2 after_regenerate)
list(GET reports 4 after_undo)
if(NOT after_moses STREQUAL after_regenerate OR NOT after_undo STREQUAL after_moses)
  message(FATAL_ERROR "the cache after Moses (${after_moses}), its regeneration (${after_regenerate}) and the undo of the next "
                      "exchange (${after_undo}) must hold the same tokens:\n${err}")
endif()
list(GET reports 7 emptied)
list(GET reports 8 amen)
if(NOT emptied STREQUAL "[cache] 0 tokens" OR amen STREQUAL "[cache] 0 tokens")
  message(FATAL_ERROR "after three undos the cache must be empty, and the last message must answer:\n${err}")
endif()
# the regenerated answer is the greedy answer again: the answers to Moses in the first two reports are equal
string(REGEX MATCHALL "Who was Moses\\?<\\|endofuserprompt\\|><\\|response\\|>[^<]*<\\|endofresponse\\|>" convs "${err}")
list(GET convs 0 c1)
list(GET convs 1 c2)
if(NOT c1 STREQUAL c2)
  message(FATAL_ERROR "greedy /regenerate changed the answer:\n${c1}\n${c2}")
endif()
if(out STREQUAL "")
  message(FATAL_ERROR "no answers on stdout")
endif()
