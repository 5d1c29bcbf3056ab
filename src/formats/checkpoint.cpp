// checkpoint.cpp: checkpoints as safetensors files (see checkpoint.h).
#include "formats/checkpoint.h"

#include <cstdlib>
#include <cmath>
#include <cstring>

#include "core/common.h"
#include "core/json.h"
#include "formats/safetensors.h"

namespace hafvt {

static const char* kFormat = "hafvt-checkpoint-1";

void save_checkpoint(const std::string& path, const TensorTable& params, const TensorTable* m,
                     const TensorTable* v, const std::string& config_json, const TrainState& st) {
    std::vector<StTensorOut> out;
    auto add_table = [&](const TensorTable& t, const std::string& prefix) {
        for (size_t i = 0; i < t.entries().size(); i++) {
            Tensor x = t.at(i);
            out.push_back({prefix + x.name, x.dims(), x.data, "F32"});
        }
    };
    add_table(params, "");
    if (m) add_table(*m, "adam.m.");
    if (v) add_table(*v, "adam.v.");
    std::map<std::string, std::string> meta;
    meta["format"] = kFormat;
    meta["config"] = config_json;
    meta["epoch"] = std::to_string(st.epoch);
    meta["step"] = std::to_string(st.step);
    meta["best_metric"] = Json(st.best_metric).dump();
    meta["best_epoch"] = std::to_string(st.best_epoch);
    meta["bad_evals"] = std::to_string(st.bad_evals);
    meta["seed"] = std::to_string(st.seed);
    meta["data_position"] = cat("start of epoch ", st.epoch + 1);
    safetensors_write(path, out, meta);
}

// A metadata value parsed as a number, with an InputError naming the checkpoint otherwise.
// [lo, hi] keeps the callers' integer casts defined (the defaults fit a long).
static double meta_number(const StFile& f, const std::string& key, double lo = -9.2e18, double hi = 9.2e18) {
    auto it = f.metadata.find(key);
    HAFVT_INPUT(it != f.metadata.end(), f.path, ": not a hafvt checkpoint (no '", key, "' in __metadata__)");
    char* end = nullptr;
    double x = std::strtod(it->second.c_str(), &end);
    HAFVT_INPUT(end && *end == '\0' && !it->second.empty() && x >= lo && x <= hi, f.path, ": __metadata__ '", key,
                "': expected a number in [", lo, ", ", hi, "], found '", it->second.substr(0, 40), "'");
    return x;
}

static void read_meta(const StFile& f, std::string* config_json, TrainState* st) {
    auto it = f.metadata.find("format");
    HAFVT_INPUT(it != f.metadata.end() && it->second == kFormat, f.path,
                ": expected a hafvt checkpoint (__metadata__ format '", kFormat, "'), found ",
                it == f.metadata.end() ? std::string("none") : "'" + it->second.substr(0, 40) + "'");
    auto c = f.metadata.find("config");
    HAFVT_INPUT(c != f.metadata.end(), f.path, ": checkpoint without a config");
    if (config_json) *config_json = c->second;
    if (st) {
        st->epoch = (long)meta_number(f, "epoch");
        st->step = (long)meta_number(f, "step");
        st->best_metric = meta_number(f, "best_metric");
        st->best_epoch = (long)meta_number(f, "best_epoch");
        st->bad_evals = (long)meta_number(f, "bad_evals");
        st->seed = (unsigned long long)meta_number(f, "seed", 0, 1.8446744073709549e19);
    }
}

void read_checkpoint_meta(const std::string& path, std::string* config_json, TrainState* st) {
    read_meta(safetensors_read(path), config_json, st);
}

void load_checkpoint(const std::string& path, TensorTable& params, TensorTable* m, TensorTable* v) {
    StFile f = safetensors_read(path);
    read_meta(f, nullptr, nullptr);
    auto load_table = [&](TensorTable& t, const std::string& prefix) {
        for (size_t i = 0; i < t.entries().size(); i++) {
            Tensor x = t.at(i);
            const std::string name = prefix + x.name;
            HAFVT_INPUT(f.has(name), path, ": tensor '", name, "' missing (was the checkpoint written with other --views/--modalities/--q?)");
            const StEntry& e = f.entry(name);
            HAFVT_INPUT(e.shape == x.dims(), path, ": tensor '", name, "': expected shape ", x.shape_str(),
                        ", found ", shape_str(e.shape), " (was the checkpoint written for other data or settings?)");
            std::vector<float> data = f.read_f32(name);
            for (size_t k = 0; k < data.size(); k++)
                HAFVT_INPUT(std::isfinite(data[k]), path, ": tensor '", name, "' element ", k,
                            ": expected a finite number, found ", data[k]);
            std::memcpy(x.data, data.data(), data.size() * sizeof(float));
        }
    };
    load_table(params, "");
    if (m) load_table(*m, "adam.m.");
    if (v) load_table(*v, "adam.v.");
}

}  // namespace hafvt
