# Runs `dots1 generate --chat --system S --prompt P` and checks that it generates what plain generation
# from the chat-formatted prompt text generates (up to the end of the assistant's turn, where --chat stops),
# and that --chat without --prompt and --system without --chat are refused. Variables: TOOL, MODEL.
foreach(v TOOL MODEL)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "check_generate_chat_cli.cmake needs -D${v}=...")
  endif()
endforeach()

execute_process(COMMAND ${TOOL} generate --model ${MODEL} --chat --system "Be brief." --prompt "Who made the heaven?"
                        --greedy --max-new-tokens 16
  OUTPUT_VARIABLE chat_out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "dots1 generate --chat failed (${rc}): ${err}")
endif()
# The dots.llm1 template of the model folder, written out: the same prompt ids (no markers in the texts).
execute_process(COMMAND ${TOOL} generate --model ${MODEL}
                        --prompt "<|system|>Be brief.<|endofsystem|><|userprompt|>Who made the heaven?<|endofuserprompt|><|response|>"
                        --greedy --max-new-tokens 16
  OUTPUT_VARIABLE plain_out ERROR_VARIABLE err2 RESULT_VARIABLE rc2)
if(NOT rc2 EQUAL 0)
  message(FATAL_ERROR "dots1 generate failed (${rc2}): ${err2}")
endif()
string(REGEX REPLACE "\n$" "" chat_text "${chat_out}")
string(REGEX REPLACE "\n$" "" plain_text "${plain_out}")
string(FIND "${plain_text}" "${chat_text}" at)
if(NOT at EQUAL 0 OR chat_text STREQUAL "")
  message(FATAL_ERROR "--chat generated '${chat_text}', plain generation from the rendered prompt '${plain_text}'")
endif()
execute_process(COMMAND ${TOOL} generate --model ${MODEL} --chat --ids 1,2,3 ERROR_VARIABLE err3 RESULT_VARIABLE rc3 OUTPUT_QUIET)
if(rc3 EQUAL 0 OR NOT err3 MATCHES "--chat")
  message(FATAL_ERROR "--chat with --ids was not refused: ${err3}")
endif()
execute_process(COMMAND ${TOOL} generate --model ${MODEL} --system x --prompt y ERROR_VARIABLE err4 RESULT_VARIABLE rc4 OUTPUT_QUIET)
if(rc4 EQUAL 0 OR NOT err4 MATCHES "--system")
  message(FATAL_ERROR "--system without --chat was not refused: ${err4}")
endif()
message(STATUS "dots1 generate --chat: '${chat_text}' (plain: '${plain_text}')")
