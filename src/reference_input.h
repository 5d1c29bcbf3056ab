// reference_input.h: the hidden `hafvt reference-input` subcommand. It writes the fixed tiny world
// (config, perturbed parameters, frozen tables, one train batch, one eval batch) that
// tools/reference.py evaluates with PyTorch; tests/test_reference.cpp compares the C++ model with
// the values PyTorch computed from it (tests/ref/hafvt_tiny.safetensors).
#pragma once
#include <cstddef>
#include <string>

#include "adam.h"
#include "model.h"

namespace hafvt {

// The tiny world's settings as the JSON stored under __metadata__["config"], and back.
// Numbers are the float32 values the C++ uses, written as doubles that round-trip them exactly.
std::string reference_config_json(const ModelConfig& c, const AdamConfig& adam, size_t adam_steps);
ModelConfig reference_config_from_json(const std::string& text, AdamConfig* adam, size_t* adam_steps);

// argv[0..argc) = the arguments after `reference-input`. Returns 0, or throws InputError.
int reference_input_main(int argc, char** argv);

}  // namespace hafvt
