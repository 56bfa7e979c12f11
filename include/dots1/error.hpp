// dots1/error.hpp — the typed exceptions every part of dots1 throws.
//
// Every failure a user can cause (a bad file, a bad config field, a bad forward input, a bad
// generation option) is reported by one of these types, with a message that names the file, field or
// tensor and says what was expected. Catch dots1::Error to catch them all.
#pragma once

#include <stdexcept>
#include <string>

namespace dots1 {

/// Base of every error dots1 reports.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

/// A config.json field is missing, has the wrong type, or breaks a rule (spec 1.3).
class ConfigError : public Error {
 public:
  ConfigError(std::string field, std::string value, std::string rule)
      : Error("config field '" + field + "' = " + value + ": " + rule),
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

}  // namespace dots1
