// dots1/error.hpp — the typed exceptions every part of dots1 throws.
//
// Every failure a user can cause (a bad file, a bad config field, a bad forward input, a bad
// generation option) is reported by one of these types, with a message that names the file, field or
// tensor and says what was expected. Catch dots1::Error to catch them all.
#pragma once

#include <cstddef>
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>
#include <string_view>

namespace dots1 {

/// The longest piece of a user's value (a JSON value, a token, a name, a file's text) that an error message
/// repeats; the rest is elided with its length, so that a 100 MB string in a file gives a one-line message.
inline constexpr std::size_t kMaxShownBytes = 120;

/// `value` as an error message shows it: at most `max_bytes` bytes (cut at a UTF-8 character boundary, then
/// "... (N bytes in all)"), control characters and bytes that are not UTF-8 written as \xHH, so that a message
/// stays one readable line whatever the input held. Every message that repeats a user's value goes through this.
inline std::string shown(std::string_view value, std::size_t max_bytes = kMaxShownBytes) {
  std::string out;
  std::size_t i = 0;
  auto hex = [&](unsigned char c) {
    char b[5];
    std::snprintf(b, sizeof b, "\\x%02X", c);
    out += b;
  };
  while (i < value.size() && out.size() < max_bytes) {
    const auto c = static_cast<unsigned char>(value[i]);
    // A complete, minimal UTF-8 sequence is kept as is; anything else is escaped byte by byte.
    std::size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (len > 1) {
      bool ok = i + len <= value.size() && c >= 0xC2 && c <= 0xF4;
      for (std::size_t k = 1; ok && k < len; ++k) ok = (static_cast<unsigned char>(value[i + k]) & 0xC0) == 0x80;
      if (!ok) len = 0;
    }
    if (len == 1 && (c < 0x20 || c == 0x7F)) {
      hex(c);
    } else if (len == 0) {
      hex(c);
      len = 1;
    } else {
      out.append(value.substr(i, len));
    }
    i += len;
  }
  if (i < value.size()) out += "... (" + std::to_string(value.size()) + " bytes in all)";
  return out;
}

/// Base of every error dots1 reports.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

/// A config.json field is missing, has the wrong type, or breaks a rule (spec 1.3).
class ConfigError : public Error {
 public:
  ConfigError(std::string field, std::string value, std::string rule)
      : Error("config field '" + shown(field) + "' = " + shown(value) + ": " + rule),
        field_(std::move(field)), value_(std::move(value)), rule_(std::move(rule)) {}
  const std::string& field() const noexcept { return field_; }
  const std::string& value() const noexcept { return value_; }
  const std::string& rule() const noexcept { return rule_; }

 private:
  std::string field_, value_, rule_;
};

/// A file could not be opened, read or written.
class IoError : public Error {
 public:
  using Error::Error;
};

/// A safetensors file is malformed (header, offsets, dtype, sizes).
class SafetensorsError : public Error {
 public:
  using Error::Error;
};

/// A checkpoint folder does not match the config: missing, unexpected or mis-shaped tensors.
class CheckpointError : public Error {
 public:
  using Error::Error;
};

/// Inputs to forward() are inconsistent (ids out of range, wrong mask shape, ...).
class InputError : public Error {
 public:
  using Error::Error;
};

/// tokenizer.json / tokenizer_config.json problems, unsupported features, invalid text.
class TokenizerError : public Error {
 public:
  using Error::Error;
};

/// A Jinja chat template that cannot be parsed or rendered: a syntax error, a construct outside the
/// subset dots1 implements, a runtime error (an undefined value used, a type mismatch), a resource limit,
/// or the template's own raise_exception('...'). message() is the bare message (for raise_exception, the
/// template's text exactly); line() and column() locate it in the template (1-based; 0 when unknown).
class TemplateError : public Error {
 public:
  explicit TemplateError(std::string message, int line = 0, int column = 0)
      : Error(located(message, line, column)), message_(std::move(message)), line_(line), column_(column) {}
  const std::string& message() const noexcept { return message_; }
  int line() const noexcept { return line_; }
  int column() const noexcept { return column_; }

 private:
  static std::string located(const std::string& message, int line, int column) {
    if (line <= 0) return "chat template: " + message;
    std::string where = "chat template, line " + std::to_string(line);
    if (column > 0) where += ", column " + std::to_string(column);
    return where + ": " + message;
  }
  std::string message_;
  int line_, column_;
};

/// The machine lacks a resource a request needs (memory for a model), detected before it is used.
class ResourceError : public Error {
 public:
  using Error::Error;
};
/// Invalid generation options.
class GenerationError : public Error {
 public:
  using Error::Error;
};

/// The name of the most derived dots1 error type of `e` ("InputError", ...; "Error" for the base, "" for an
/// exception that is not a dots1::Error). For tools and tests that report or check the kind of a failure.
inline const char* error_type_name(const std::exception& e) {
  if (dynamic_cast<const ConfigError*>(&e)) return "ConfigError";
  if (dynamic_cast<const IoError*>(&e)) return "IoError";
  if (dynamic_cast<const SafetensorsError*>(&e)) return "SafetensorsError";
  if (dynamic_cast<const CheckpointError*>(&e)) return "CheckpointError";
  if (dynamic_cast<const InputError*>(&e)) return "InputError";
  if (dynamic_cast<const TokenizerError*>(&e)) return "TokenizerError";
  if (dynamic_cast<const TemplateError*>(&e)) return "TemplateError";
  if (dynamic_cast<const ResourceError*>(&e)) return "ResourceError";
  if (dynamic_cast<const GenerationError*>(&e)) return "GenerationError";
  if (dynamic_cast<const Error*>(&e)) return "Error";
  return "";
}

}  // namespace dots1
