#include "quant/quant_spec.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flatfleet::quant {
namespace {

using ::testing::HasSubstr;

TEST(QuantSpecTest, ParsesAFullSpec) {
  auto spec = ParseQuantSpec(R"({
    "method": "integer_scale",
    "weight": {"bits": 4, "group_size": 64, "symmetric": false, "clip_ratio": 0.9},
    "activation": {"bits": 8, "granularity": "per_tensor", "symmetric": true},
    "scale_kind": "integer", "max_amplifier_bits": 10,
    "transform": {"kind": "hadamard", "seed": 42}, "outlier_channels": 0})");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->method, QuantMethod::kIntegerScale);
  EXPECT_EQ(spec->weight.bits, 4);
  EXPECT_EQ(spec->weight.group_size, 64);
  EXPECT_FALSE(spec->weight.symmetric);
  EXPECT_DOUBLE_EQ(spec->weight.clip_ratio, 0.9);
  EXPECT_EQ(spec->activation.granularity, ActivationGranularity::kPerTensor);
  EXPECT_EQ(spec->scale_kind, ScaleKind::kInteger);
  EXPECT_EQ(spec->max_amplifier_bits, 10);
  EXPECT_EQ(spec->transform.kind, TransformKind::kHadamard);
  EXPECT_EQ(spec->transform.seed, 42u);
}

TEST(QuantSpecTest, RoundTripsThroughJson) {
  QuantSpec spec;
  spec.method = QuantMethod::kQuik;
  spec.weight = {.bits = 3, .group_size = 0, .symmetric = false, .clip_ratio = 0.75};
  spec.activation = {.bits = 4,
                     .granularity = ActivationGranularity::kPerToken,
                     .symmetric = false,
                     .clip_ratio = 0.5};
  spec.transform = {.kind = TransformKind::kKronecker, .seed = 7};
  spec.outlier_channels = 128;
  spec.smooth = {.enabled = true, .alpha = 0.65, .search_alpha = true};
  spec.flatten = {.enabled = true, .threshold = 3.5, .max_growth = 0.125};
  auto parsed = ParseQuantSpec(QuantSpecToJson(spec).dump());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, spec);
  // GPTQ (which excludes QUIK outliers).
  spec.outlier_channels = 0;
  spec.weight_quantizer = WeightQuantizer::kGptq;
  spec.gptq = {.damp = 0.05, .block_size = 32, .act_order = true};
  parsed = ParseQuantSpec(QuantSpecToJson(spec).dump());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, spec);
}

TEST(QuantSpecTest, ErrorsNameTheField) {
  struct Case {
    const char* json;
    const char* field;
  };
  for (const Case& c : {
           Case{R"({"weight": {}})", "'method'"},
           Case{R"({"method": "gptq"})", "'method'"},
           Case{R"({"method": "quik", "weight": {"bits": 9}})", "'weight.bits'"},
           Case{R"({"method": "quik", "weight": {"bits": "4"}})", "'weight.bits'"},
           Case{R"({"method": "quik", "weight": {"clip_ratio": 1.5}})", "'weight.clip_ratio'"},
           Case{R"({"method": "quik", "weight": {"group": 128}})", "'weight.group'"},
           Case{R"({"method": "quik", "activation": {"granularity": "per_row"}})",
                "'activation.granularity'"},
           Case{R"({"method": "quik", "activation": {"symmetric": 1}})", "'activation.symmetric'"},
           Case{R"({"method": "quik", "transform": {"seed": -1}})", "'transform.seed'"},
           Case{R"({"method": "quik", "transform": []})", "'transform'"},
           Case{R"({"method": "quik", "extra": 1})", "'extra'"},
           Case{R"({"method": "abq_llm", "weight_quantizer": "obq"})", "'weight_quantizer'"},
           Case{R"({"method": "abq_llm", "gptq": {"damp": -1}})", "'gptq.damp'"},
           Case{R"({"method": "abq_llm", "gptq": {"block_size": 0}})", "'gptq.block_size'"},
           Case{R"({"method": "abq_llm", "gptq": {"order": true}})", "'gptq.order'"},
           Case{R"({"method": "smooth_quant", "smooth": {"alpha": 1.5}})", "'smooth.alpha'"},
           Case{R"({"method": "smooth_quant", "smooth": {"enabled": "yes"}})", "'smooth.enabled'"},
           Case{R"({"method": "flatten_quant", "flatten": {"threshold": 0.5}})",
                "'flatten.threshold'"},
           Case{R"({"method": "flatten_quant", "flatten": {"max_growth": 9}})",
                "'flatten.max_growth'"},
           Case{R"({"method": "quik", "outlier_channels": 8, "weight_quantizer": "gptq"})",
                "'weight_quantizer'"},
           Case{R"({"method": "quik", "scale_kind": "integer", "weight": {"group_size": 0}})",
                "'scale_kind'"},
           Case{R"({"method": "quik", "activation": {"granularity": "per_tensor",
                "symmetric": false}})",
                "'activation.symmetric'"},
       }) {
    auto spec = ParseQuantSpec(c.json);
    ASSERT_FALSE(spec.ok()) << c.json;
    EXPECT_THAT(std::string(spec.status().message()), HasSubstr(c.field)) << c.json;
  }
  EXPECT_FALSE(ParseQuantSpec("{not json").ok());
}

}  // namespace
}  // namespace flatfleet::quant
