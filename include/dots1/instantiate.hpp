// dots1/instantiate.hpp — compile a model type once in a program of many files (an optional speed-up:
// dots1 stays header-only).
//
//   // model.hpp, included by every file that uses the model
//   #include <dots1/eigen.hpp>
//   #include <dots1/instantiate.hpp>
//   DOTS1_EXTERN_MODEL(dots1::CausalLM<dots1::EigenBackend<float>, dots1::Dots1>)
//
//   // model.cpp, one file of the program
//   #include "model.hpp"
//   DOTS1_INSTANTIATE_MODEL(dots1::CausalLM<dots1::EigenBackend<float>, dots1::Dots1>)
//
// The loading constructor, the description, the forward (plain and under the ready-made instruments:
// Recorder, Intervention, Chain<Intervention, Recorder>) and generate() (plain and under an Intervention)
// are then compiled in model.cpp only; the other files keep only their own code. Forwards under other
// instruments are compiled where they are used, as without this header. The argument is the class
// template-id itself (an alias such as dots1::CpuModel cannot be explicitly instantiated).
#pragma once

#include <memory>

#include "dots1/base/forward_io.hpp"
#include "dots1/generation/generate.hpp"
#include "dots1/instrument/instrument.hpp"
#include "dots1/instrument/intervention.hpp"
#include "dots1/instrument/recorder.hpp"
#include "dots1/model/causal_lm.hpp"

#define DOTS1_MODEL_INSTANTIATION_LIST_(EXTERN, ...)                                                                                        \
  EXTERN template class __VA_ARGS__;                                                                                                        \
  EXTERN template __VA_ARGS__::Output __VA_ARGS__::run<::dots1::Observer<__VA_ARGS__::backend>>(                                             \
      const ::dots1::ForwardInput&, std::shared_ptr<__VA_ARGS__::Cache>, ::dots1::Observer<__VA_ARGS__::backend>) const;                   \
  EXTERN template __VA_ARGS__::Output __VA_ARGS__::run<::dots1::Observer<__VA_ARGS__::backend, ::dots1::Recorder>>(                        \
      const ::dots1::ForwardInput&, std::shared_ptr<__VA_ARGS__::Cache>, ::dots1::Observer<__VA_ARGS__::backend, ::dots1::Recorder>) const; \
  EXTERN template __VA_ARGS__::Output __VA_ARGS__::run<::dots1::Observer<__VA_ARGS__::backend, ::dots1::Intervention>>(                    \
      const ::dots1::ForwardInput&, std::shared_ptr<__VA_ARGS__::Cache>, ::dots1::Observer<__VA_ARGS__::backend, ::dots1::Intervention>)   \
      const;                                                                                                                                \
  EXTERN template __VA_ARGS__::Output                                                                                                       \
  __VA_ARGS__::run<::dots1::Observer<__VA_ARGS__::backend, ::dots1::Chain<::dots1::Intervention, ::dots1::Recorder>>>(                     \
      const ::dots1::ForwardInput&, std::shared_ptr<__VA_ARGS__::Cache>,                                                                   \
      ::dots1::Observer<__VA_ARGS__::backend, ::dots1::Chain<::dots1::Intervention, ::dots1::Recorder>>) const;                             \
  EXTERN template ::dots1::GenerationOutput dots1::generate<__VA_ARGS__>(__VA_ARGS__&, const ::dots1::GenerationInput&,                     \
                                                                       const ::dots1::GenerationConfig&, const ::dots1::TokenCallback&);  \
  EXTERN template ::dots1::GenerationOutput dots1::generate<__VA_ARGS__, ::dots1::Intervention>(                                           \
      __VA_ARGS__&, const ::dots1::GenerationInput&, const ::dots1::GenerationConfig&, const ::dots1::TokenCallback&, ::dots1::Intervention&);

/// In a header: the model type's heavy functions are compiled elsewhere (in one file's DOTS1_INSTANTIATE_MODEL).
#define DOTS1_EXTERN_MODEL(...) DOTS1_MODEL_INSTANTIATION_LIST_(extern, __VA_ARGS__)
/// In one .cpp file of the program: compile them there.
#define DOTS1_INSTANTIATE_MODEL(...) DOTS1_MODEL_INSTANTIATION_LIST_(, __VA_ARGS__)
