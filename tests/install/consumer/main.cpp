// Uses the installed headers: loads a checkpoint folder given on the command line and runs one forward.
#include <cstdio>

#include <dots1/eigen.hpp>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  auto model = dots1::CpuModel::from_pretrained(argv[1]);
  const auto out = model.forward(dots1::ForwardInput::from_ids({{1, 2, 3}}));
  std::printf("consumer: logits [%lld, %lld, %lld]\n", (long long)out.logits.shape[0], (long long)out.logits.shape[1],
              (long long)out.logits.shape[2]);
  return out.logits.values.size() == static_cast<size_t>(3 * model.config().vocab_size) ? 0 : 1;
}
