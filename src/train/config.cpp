// config.cpp: the settings table of config.h and what it drives: flags, help, JSON, checks.
#include "train/config.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <type_traits>

#include "core/common.h"
#include "data/dataset.h"
#include "model/model.h"

namespace hafvt {

// ---- the table ---------------------------------------------------------------------------------

namespace {

using namespace setting_range;

#define HAFVT_SETTING_ROW(flag, member, type, def, kind, lo, hi, open_lo, open_hi, range, choices, help, stored, resume) \
    Setting{flag, #member, Kind::kind, [](TrainConfig& c) -> void* { return &c.member; }, lo, hi, open_lo, open_hi, range, \
            choices, help, stored, resume},

const std::vector<Setting> kSettings = {HAFVT_SETTINGS(HAFVT_SETTING_ROW)};

#undef HAFVT_SETTING_ROW

// The values run_train derives and stores in config.json beside the settings, and whether a resumed
// run must keep them (part of the resume key). A configuration file may hold them; they are not
// read back.
struct DerivedKey {
    const char* key;
    bool resume;
};
const DerivedKey kDerivedKeys[] = {{"fingerprint", true}, {"modalities_resolved", true}, {"weights", true}, {"e", true},
                                   {"catalog_fingerprint", false}, {"NX", false}, {"NY", false},
                                   {"gradient_slices", false}};

// "full,c2dsr" -> "full or c2dsr"; "a,b,c" -> "a, b or c".
std::string choices_text(const std::string& choices) {
    std::vector<std::string> v;
    size_t p = 0;
    while (true) {
        size_t c = choices.find(',', p);
        v.push_back(choices.substr(p, c == std::string::npos ? std::string::npos : c - p));
        if (c == std::string::npos) break;
        p = c + 1;
    }
    std::string s;
    for (size_t i = 0; i < v.size(); i++) s += (i == 0 ? "" : i + 1 == v.size() ? " or " : ", ") + v[i];
    return s;
}

bool in_choices(const std::string& value, const std::string& choices) {
    return (',' + choices + ',').find(',' + value + ',') != std::string::npos;
}

// The value of a numeric setting as a double.
double number_of(const Setting& s, TrainConfig& c) {
    void* p = s.field(c);
    switch (s.kind) {
        case Kind::SIZE: return (double)*(size_t*)p;
        case Kind::INT: return (double)*(int*)p;
        case Kind::FLOAT: return (double)*(float*)p;
        case Kind::U64: return (double)*(uint64_t*)p;
        default: return 0.0;
    }
}

std::string value_text(const Setting& s, TrainConfig& c) {
    void* p = s.field(c);
    switch (s.kind) {
        case Kind::SIZE: return cat(*(size_t*)p);
        case Kind::INT: return cat(*(int*)p);
        case Kind::FLOAT: return cat(*(float*)p);
        case Kind::U64: return cat(*(uint64_t*)p);
        case Kind::BOOL: return *(bool*)p ? "true" : "false";
        case Kind::STR: return *(std::string*)p;
        case Kind::STRS: return "";
    }
    return "";
}

}  // namespace

const std::vector<Setting>& settings() { return kSettings; }

const Setting& setting(const std::string& key) {
    for (const Setting& s : kSettings)
        if (key == s.key) return s;
    throw_internal(__FILE__, __LINE__, cat("no setting '", key, "' in the settings table"));
}

std::string setting_name(const std::string& key, Source src) {
    const Setting& s = setting(key);
    return src == Source::FLAGS ? cat("--", s.flag) : cat("'", s.key, "'");
}

std::vector<Flag> train_flags(TrainConfig& c) {
    std::vector<Flag> flags;
    for (const Setting& s : kSettings) flags.push_back({s.flag, s.kind, s.field(c), s.help});
    return flags;
}

Json config_to_json(const TrainConfig& c0) {
    TrainConfig c = c0;
    Json j = Json::object();
    for (const Setting& s : kSettings) {
        if (!s.stored) continue;
        void* p = s.field(c);
        switch (s.kind) {
            case Kind::STR: j.set(s.key, *(std::string*)p); break;
            case Kind::SIZE: j.set(s.key, *(size_t*)p); break;
            case Kind::INT: j.set(s.key, *(int*)p); break;
            case Kind::FLOAT: j.set(s.key, *(float*)p); break;
            case Kind::U64: j.set(s.key, (unsigned long long)*(uint64_t*)p); break;
            case Kind::BOOL: j.set(s.key, *(bool*)p); break;
            case Kind::STRS: break;  // no setting is a list
        }
    }
    return j;
}

// One setting's value from JSON into c; `what` names the source in messages.
static void read_setting(const Setting& s, const Json& x, TrainConfig& c, const std::string& what) {
    // a number outside its setting's type would make the cast undefined: refuse it
    auto num = [&](const char* k, auto* v) {
        using V = std::remove_pointer_t<decltype(v)>;
        double d = x.is_number() ? x.as_number() : NAN;
        bool fits = std::is_floating_point<V>::value ? std::fabs(d) <= 3.4e38
                                                      : d >= (double)std::numeric_limits<V>::min() &&
                                                            d < (double)std::numeric_limits<V>::max();
        HAFVT_INPUT(fits, what, ": '", k, "': expected a number within the range of its setting, found ", x.dump());
        *v = (V)d;
    };
    void* p = s.field(c);
    switch (s.kind) {
        case Kind::STR:
            HAFVT_INPUT(x.is_string(), what, ": '", s.key, "' must be a string");
            *(std::string*)p = x.as_string();
            break;
        case Kind::BOOL:
            HAFVT_INPUT(x.is_bool(), what, ": '", s.key, "' must be true or false");
            *(bool*)p = x.as_bool();
            break;
        case Kind::SIZE: num(s.key, (size_t*)p); break;
        case Kind::INT: num(s.key, (int*)p); break;
        case Kind::FLOAT: num(s.key, (float*)p); break;
        case Kind::U64: num(s.key, (uint64_t*)p); break;
        case Kind::STRS: break;
    }
}

TrainConfig config_from_json(const Json& j, const std::string& what) {
    HAFVT_INPUT(j.is_object(), what, ": expected a JSON object of settings");
    TrainConfig c;
    for (const Setting& s : kSettings)
        if (s.stored)
            if (const Json* x = j.get(s.key)) read_setting(s, *x, c, what);
    return c;
}


void apply_config_file(const std::string& path, TrainConfig& c) {
    const Json j = Json::parse(read_file(path), path);
    HAFVT_INPUT(j.is_object(), path, ": expected a JSON object of settings (keys as in a run's config.json), found ",
                j.type_name());
    std::vector<std::string> known;
    for (const Setting& s : kSettings) known.push_back(s.key);
    for (const auto& kv : j.items()) {
        if (std::any_of(std::begin(kDerivedKeys), std::end(kDerivedKeys), [&](const DerivedKey& d) { return kv.first == d.key; }))
            continue;
        const Setting* row = nullptr;
        for (const Setting& s : kSettings)
            if (kv.first == s.key) row = &s;
        HAFVT_INPUT(row, path, ": unknown setting '", kv.first, "'", did_you_mean(kv.first, known, "'", "'"),
                    " (expected the keys of a run's config.json: the settings of hafvt train --help, with _ for -)");
        read_setting(*row, kv.second, c, path);
    }
}

// "x,y,xy" -> one bool per name of `names` (n of them); InputError naming the setting otherwise.
static void parse_name_list(const std::string& s, const std::string& name, const char* const* names, int n, bool* on) {
    std::string all;
    for (int i = 0; i < n; i++) on[i] = false, all += cat(i ? "," : "", names[i]);
    size_t pos = 0;
    HAFVT_INPUT(!s.empty(), name, ": expected a comma-separated list, found nothing");
    while (pos <= s.size()) {
        size_t comma = s.find(',', pos);
        std::string item = s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
        bool found = false;
        for (int i = 0; i < n; i++)
            if (item == names[i]) on[i] = found = true;
        HAFVT_INPUT(found, name, ": expected items from {", all, "}, found '", item, "' in '", s, "'");
        if (comma == std::string::npos) break;
        pos = comma + 1;
    }
}

DeviceSettingNames device_setting_names(Source src) {
    return {setting_name("device", src), setting_name("T", src), setting_name("tf32", src)};
}

std::string& modality_file(TrainConfig& c, int m, bool ids) {
    HAFVT_CHECK(m != MOD_ID && m < kNumMods, "modality ", m, " has no feature file");
    const Setting& s = setting(ids ? cat(kModNames[m], "_ids") : std::string(kModNames[m]));
    HAFVT_CHECK(s.kind == Kind::STR, "setting ", s.key, " is not a file name");
    return *static_cast<std::string*>(s.field(c));
}
const std::string& modality_file(const TrainConfig& c, int m, bool ids) {
    return modality_file(const_cast<TrainConfig&>(c), m, ids);
}

// The modalities a configuration asks for (indexed by Modality, model.h): --modalities, or id
// plus every modality with a feature file.
static void resolve_modalities(const TrainConfig& c, bool* mods, Source src) {
    if (c.modalities.empty()) {
        for (int m = 0; m < kNumMods; m++) mods[m] = m == MOD_ID || !modality_file(c, m, false).empty();
    } else {
        parse_name_list(c.modalities, setting_name("modalities", src), kModNames, kNumMods, mods);
    }
}

// The mixture weights before renormalization (SPEC §2.4): alpha, beta (1/3 each when unset) and
// 1 - alpha - beta for txt (at least 0), by modality.
static void raw_weights(const TrainConfig& c, float* raw) {
    const float a = c.alpha < 0 ? 1.0f / 3 : c.alpha, b = c.beta < 0 ? 1.0f / 3 : c.beta;
    const float w[kNumMods] = {a, b, std::max(0.0f, 1.0f - a - b)};
    std::copy(w, w + kNumMods, raw);
}

void validate_config(const TrainConfig& c0, Source src) {
    TrainConfig c = c0;
    auto N = [src](const char* key) { return setting_name(key, src); };
    HAFVT_INPUT(!c.data.empty(), N("data"), ": required (a C2DSR dataset folder)");
    // every row's range and values
    for (const Setting& s : kSettings) {
        if (s.lo <= s.hi) {
            double x = number_of(s, c);
            bool ok = (s.open_lo ? x > s.lo : x >= s.lo) && (s.open_hi ? x < s.hi : x <= s.hi);
            HAFVT_INPUT(ok, N(s.key), ": expected ", s.range, ", found ", value_text(s, c));
        }
        if (s.choices) {
            const std::string& v = *(std::string*)s.field(c);
            HAFVT_INPUT(in_choices(v, s.choices), N(s.key), ": expected ", choices_text(s.choices), ", found '", v, "'");
        }
    }
    // combinations
    HAFVT_INPUT(c.q % c.heads == 0, N("heads"), ": expected a divisor of ", N("q"), " ", c.q, ", found ", c.heads);
    bool views[3], mods[kNumMods];
    parse_name_list(c.views, N("views"), kViewNames, 3, views);
    resolve_modalities(c, mods, src);
    for (int m = 0; m < kNumMods; m++) {
        if (m == MOD_ID) continue;
        const std::string key = kModNames[m], ids_key = key + "_ids";
        const bool has = !modality_file(c, m, false).empty();
        HAFVT_INPUT(!mods[m] || has, N("modalities"), " '", c.modalities, "' includes ", key, ": expected the ", key,
                    " features with ", N(key.c_str()), " F.npy, found no ", N(key.c_str()));
        HAFVT_INPUT(modality_file(c, m, true).empty() || has, N(ids_key.c_str()), " given: expected ", N(key.c_str()),
                    " F.npy with it, found no ", N(key.c_str()));
    }
    // -1 is the "unset" default; any other negative weight is a mistake, not a default
    const std::string ab = cat(N("alpha"), "/", N("beta"));
    // (each value named on its own: the other may be the unset -1, or come from a checkpoint)
    HAFVT_INPUT(c.alpha == -1 || (c.alpha >= 0 && c.alpha <= 1), ab, ": expected weights in [0, 1], found ", c.alpha, " for ", N("alpha"));
    HAFVT_INPUT(c.beta == -1 || (c.beta >= 0 && c.beta <= 1), ab, ": expected weights in [0, 1], found ", c.beta, " for ", N("beta"));
    float raw[kNumMods];
    raw_weights(c, raw);
    const float a = raw[MOD_ID], b = raw[MOD_IMG];
    auto weight_text = [&](const char* key, float v, bool unset) { return cat(N(key), " ", v, unset ? " (the default)" : ""); };
    HAFVT_INPUT(a + b <= 1.0f + 1e-6f, weight_text("alpha", a, c.alpha < 0), " + ", weight_text("beta", b, c.beta < 0), " = ",
                a + b, ": expected a sum of at most 1 (the text weight is 1 - alpha - beta)");
    HAFVT_INPUT(c.id_warmup == 0 || resolve_model_config(c, 0, 0).mods[MOD_ID], N("id_warmup"), " ", c.id_warmup,
                ": expected the id modality on with a positive weight (the warm-up trains the id head alone), found ",
                N("modalities"), " '", c.modalities, "' with ", N("alpha"), " ", c.alpha);
    if (resolve_model_config(c, 0, 0).num_mods() == 0) {
        std::string on;
        for (int m = 0; m < kNumMods; m++)
            if (mods[m]) on += cat(on.empty() ? "" : ", ", kModNames[m], " ", raw[m]);
        HAFVT_FAIL_INPUT(ab, ": expected a positive weight for at least one enabled modality, found ", on,
                         " (the txt weight is 1 - alpha - beta)");
    }
}

ModelConfig resolve_model_config(const TrainConfig& c, size_t NX, size_t NY) {
    bool views[3], mods[kNumMods];
    parse_name_list(c.views, setting_name("views"), kViewNames, 3, views);
    resolve_modalities(c, mods, Source::FLAGS);
    ModelConfig mc;
    mc.NX = NX;
    mc.NY = NY;
    mc.T = c.T, mc.q = c.q, mc.n_blocks = c.blocks, mc.n_heads = c.heads, mc.dropout = c.dropout;
    mc.lambda1 = c.lambda1, mc.lambda2 = c.lambda2, mc.lambda_h = c.lambda_h;
    float raw[kNumMods];
    raw_weights(c, raw);
    float sum = 0;
    for (int m = 0; m < kNumMods; m++) {
        mods[m] = mods[m] && raw[m] > 0.0f;
        sum += mods[m] ? raw[m] : 0.0f;
    }
    for (int v = 0; v < 3; v++) mc.views[v] = views[v];
    for (int m = 0; m < kNumMods; m++) {
        mc.mods[m] = mods[m];
        mc.weight[m] = mods[m] ? raw[m] / sum : 0.0f;
    }
    mc.e = 0;
    return mc;
}

std::string resume_key(const Json& cfg) {
    Json k = Json::object();
    for (const DerivedKey& d : kDerivedKeys)
        if (d.resume)
            if (const Json* v = cfg.get(d.key)) k.set(d.key, *v);
    // a setting the stored configuration lacks (written before the setting existed) takes its
    // default, which is what that run computed
    static const Json defaults = config_to_json(TrainConfig());
    for (const Setting& s : kSettings)
        if (s.resume) {
            if (const Json* v = cfg.get(s.key)) k.set(s.key, *v);
            else if (const Json* d = defaults.get(s.key)) k.set(s.key, *d);
        }
    return k.dump();
}

}  // namespace hafvt
