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
