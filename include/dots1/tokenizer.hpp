// dots1/tokenizer.hpp — the tokenizer and the chat format: the checkpoint's Jinja chat template (run by
// dots1's interpreter, dots1/tokenizer/jinja.hpp) or the built-in dots.llm1 format (umbrella header).
//
//   auto tok = dots1::Tokenizer::from_folder(checkpoint_dir);      // tokenizer.json + tokenizer_config.json
//   std::vector<int32_t> ids = tok.encode("Hello world");          // == HF tokenizers, id for id
//   std::string text = tok.decode(ids);
//   auto chat = dots1::ChatFormat::for_tokenizer(tok);             // its chat_template, else dots.llm1
//   auto prompt = chat.encode(tok, {{"user", "Hi"}}, /*add_generation_prompt=*/true);
#pragma once

#include "dots1/tokenizer/chat_format.hpp"
#include "dots1/tokenizer/decode_stream.hpp"
#include "dots1/tokenizer/tokenizer.hpp"
