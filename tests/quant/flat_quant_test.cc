#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "common/thread_pool.h"
#include "gtest/gtest.h"
#include "kernels/cpu/quant/dense_matrix.h"
#include "quant/calibrated_linear.h"
#include "quant/flat_quant_input_transform.h"
#include "quant/flat_quant_trainer.h"
#include "quant/quantized_linear.h"
#include "quant/recipes.h"
#include "tests/quant/test_random.h"
#include "tests/quant/transform_test_util.h"

namespace flatfleet::quant {
namespace {

using test_util::MatMulTransposed;

class FlatQuantTest : public test_util::RandomTest {
 protected:
  // Random invertible factors (orthogonal plus noise), smoothing and clip logits.
  FlatQuantParams RandomParams(int64_t n1, int64_t n2, uint64_t salt) {
    FlatQuantParams p;
    p.n1 = n1;
    p.n2 = n2;
    p.p1 = RandomOrthogonal(n1, seed_ + salt + 11);
    p.p2 = RandomOrthogonal(n2, seed_ + salt + 12);
    for (double& v : p.p1) v += 0.2 * UniformFloat(-1.0f, 1.0f);
    for (double& v : p.p2) v += 0.2 * UniformFloat(-1.0f, 1.0f);
    p.log_scales.resize(n1 * n2);
    for (double& v : p.log_scales) v = UniformFloat(-0.5f, 0.5f);
    p.activation_clip_logit = UniformFloat(1.0f, 3.0f);
    p.weight_clip_logit = UniformFloat(1.0f, 3.0f);
    return p;
  }

  // Every analytic gradient entry against a central difference of `loss`.
  void ExpectGradientMatches(const FlatQuantParams& params, const FlatQuantParams& grad,
                             const std::function<double(const FlatQuantParams&)>& loss, double step,
                             double tolerance, bool check_clips) {
    struct Entry {
      std::vector<double> FlatQuantParams::*vec;
      const char* name;
    };
    int checked = 0;
    double worst = 0.0;
    for (Entry e : {Entry{&FlatQuantParams::p1, "p1"}, Entry{&FlatQuantParams::p2, "p2"},
                    Entry{&FlatQuantParams::log_scales, "log_scales"}}) {
      for (size_t i = 0; i < (params.*e.vec).size(); ++i) {
        FlatQuantParams plus = params, minus = params;
        (plus.*e.vec)[i] += step;
        (minus.*e.vec)[i] -= step;
        const double numeric = (loss(plus) - loss(minus)) / (2 * step);
        const double analytic = (grad.*e.vec)[i];
        worst = std::max(worst, std::fabs(numeric - analytic));
        EXPECT_NEAR(analytic, numeric, tolerance * (1.0 + std::fabs(numeric)))
            << e.name << "[" << i << "]";
        ++checked;
      }
    }
    for (double FlatQuantParams::*logit :
         {&FlatQuantParams::activation_clip_logit, &FlatQuantParams::weight_clip_logit}) {
      if (!check_clips) break;
      FlatQuantParams plus = params, minus = params;
      plus.*logit += step;
      minus.*logit -= step;
      const double numeric = (loss(plus) - loss(minus)) / (2 * step);
      EXPECT_NEAR(grad.*logit, numeric, tolerance * (1.0 + std::fabs(numeric))) << "clip logit";
      ++checked;
    }
    EXPECT_GT(checked, 20);
    RecordProperty("worst_abs_error", std::to_string(worst));
  }
};

TEST(KroneckerLeftFactorTest, PicksTheDivisorClosestToTheSquareRoot) {
  EXPECT_EQ(KroneckerLeftFactor(256), 16);
  EXPECT_EQ(KroneckerLeftFactor(688), 16);  // 16 x 43
  EXPECT_EQ(KroneckerLeftFactor(512), 16);  // 16 x 32
  EXPECT_EQ(KroneckerLeftFactor(12), 3);
  EXPECT_EQ(KroneckerLeftFactor(13), 1);
}

TEST_F(FlatQuantTest, TiedLossWithoutQuantizationIsExactAndFlat) {
  const int64_t n1 = 3, n2 = 4, n = n1 * n2, m = 6, out = 5;
  const std::vector<float> x = Gaussian(m * n), w = Gaussian(out * n);
  FlatQuantProblem problem{
      .inputs = x, .rows = m, .weight = w, .out_features = out, .in_features = n};
  auto objective = FlatQuantObjective::Create(problem);
  ASSERT_TRUE(objective.ok()) << objective.status();
  auto base = objective->Evaluate(RandomParams(n1, n2, 0), QuantizerMode::kNone);
  ASSERT_TRUE(base.ok()) << base.status();
  // (X s^-1 P)(W s P^-T)^T = X W^T for every parameter value: the loss is rounding noise and the
  // activation- and weight-side gradients cancel.
  EXPECT_LT(base->loss, 1e-20);
  double largest = 0.0;
  for (double g : base->gradient.p1) largest = std::max(largest, std::fabs(g));
  for (double g : base->gradient.p2) largest = std::max(largest, std::fabs(g));
  for (double g : base->gradient.log_scales) largest = std::max(largest, std::fabs(g));
  EXPECT_LT(largest, 1e-9);
}

TEST_F(FlatQuantTest, UntiedGradientMatchesFiniteDifferencesWithoutQuantization) {
  const int64_t n1 = 3, n2 = 4, n = n1 * n2, m = 6, out = 5;
  const std::vector<float> x = Gaussian(m * n), w = Gaussian(out * n);
  FlatQuantProblem problem{
      .inputs = x, .rows = m, .weight = w, .out_features = out, .in_features = n};
  auto objective = FlatQuantObjective::Create(problem);
  ASSERT_TRUE(objective.ok()) << objective.status();
  const FlatQuantParams act = RandomParams(n1, n2, 0), wgt = RandomParams(n1, n2, 100);
  FlatQuantParams act_grad, wgt_grad;
  auto loss = objective->EvaluateUntied(act, wgt, QuantizerMode::kNone, nullptr, nullptr, &act_grad,
                                        &wgt_grad);
  ASSERT_TRUE(loss.ok()) << loss.status();
  EXPECT_GT(*loss, 1e-3);  // the two sides disagree: a genuinely non-zero loss
  ExpectGradientMatches(
      act, act_grad,
      [&](const FlatQuantParams& p) {
        return *objective->EvaluateUntied(p, wgt, QuantizerMode::kNone, nullptr, nullptr, nullptr,
                                          nullptr);
      },
      1e-6, 1e-6, /*check_clips=*/false);
  // The weight side: through P^-1 (d(P^-1) = -P^-1 dP P^-1) and the Kronecker factors.
  ExpectGradientMatches(
      wgt, wgt_grad,
      [&](const FlatQuantParams& p) {
        return *objective->EvaluateUntied(act, p, QuantizerMode::kNone, nullptr, nullptr, nullptr,
                                          nullptr);
      },
      1e-6, 1e-6, /*check_clips=*/false);
}

TEST_F(FlatQuantTest, SteGradientMatchesFiniteDifferencesOfTheFrozenRoundingLoss) {
  const int64_t n1 = 3, n2 = 4, n = n1 * n2, m = 7, out = 6;
  const std::vector<float> x = Gaussian(m * n), w = Gaussian(out * n);
  FlatQuantProblem problem{.inputs = x,
                           .rows = m,
                           .weight = w,
                           .out_features = out,
                           .in_features = n,
                           .activation_bits = 4,
                           .weight_bits = 3,
                           .weight_group_size = 6};
  auto objective = FlatQuantObjective::Create(problem);
  ASSERT_TRUE(objective.ok()) << objective.status();
  const FlatQuantParams params = RandomParams(n1, n2, 0);
  RoundingState state;
  auto base = objective->Evaluate(params, QuantizerMode::kSte, nullptr, &state);
  ASSERT_TRUE(base.ok()) << base.status();
  EXPECT_GT(base->loss, 1e-4);  // quantization error
  // Replaying the rounding reproduces the quantized loss exactly at the base point...
  auto replay = objective->Evaluate(params, QuantizerMode::kSte, &state);
  ASSERT_TRUE(replay.ok());
  EXPECT_NEAR(replay->loss, base->loss, 1e-14);
  // ...and its exact gradient is the straight-through gradient.
  ExpectGradientMatches(
      params, base->gradient,
      [&](const FlatQuantParams& p) {
        return objective->Evaluate(p, QuantizerMode::kSte, &state)->loss;
      },
      1e-6, 1e-6, /*check_clips=*/true);
}

TEST_F(FlatQuantTest, OutputChannelSubsetGradientMatchesFiniteDifferences) {
  // The training steps' mini-objective: the loss over a subset of output channels.
  const int64_t n1 = 2, n2 = 5, n = n1 * n2, m = 6, out = 7;
  const std::vector<float> x = Gaussian(m * n), w = Gaussian(out * n);
  FlatQuantProblem problem{
      .inputs = x, .rows = m, .weight = w, .out_features = out, .in_features = n};
  auto objective = FlatQuantObjective::Create(problem);
  ASSERT_TRUE(objective.ok()) << objective.status();
  const std::vector<int64_t> rows = {0, UniformInt(1, 3), UniformInt(4, 6)};
  const FlatQuantParams params = RandomParams(n1, n2, 0);
  RoundingState state;
  auto base = objective->Evaluate(params, QuantizerMode::kSte, nullptr, &state, rows);
  ASSERT_TRUE(base.ok()) << base.status();
  ExpectGradientMatches(
      params, base->gradient,
      [&](const FlatQuantParams& p) {
        return objective->Evaluate(p, QuantizerMode::kSte, &state, nullptr, rows)->loss;
      },
      1e-6, 1e-6, /*check_clips=*/true);
  const std::vector<int64_t> bad = {out};
  EXPECT_FALSE(objective->Evaluate(params, QuantizerMode::kSte, nullptr, nullptr, bad).ok());
}

TEST_F(FlatQuantTest, ChunkedLossIsTheFullObjectivesBitForBit) {
  // Loss (what training judges the initial and final transforms by) against Evaluate's loss, in
  // chunks of 1, 3 and all output channels (out = 11: a short last chunk), grouped weights.
  const int64_t n1 = 3, n2 = 4, n = n1 * n2, m = 9, out = 11;
  const std::vector<float> x = Gaussian(m * n), w = Gaussian(out * n);
  FlatQuantProblem problem{.inputs = x,
                           .rows = m,
                           .weight = w,
                           .out_features = out,
                           .in_features = n,
                           .activation_bits = 4,
                           .weight_bits = 3,
                           .weight_group_size = 6};
  auto objective = FlatQuantObjective::Create(problem);
  ASSERT_TRUE(objective.ok()) << objective.status();
  const FlatQuantParams params = RandomParams(n1, n2, 0);
  auto full = objective->Evaluate(params, QuantizerMode::kSte);
  ASSERT_TRUE(full.ok()) << full.status();
  for (int64_t chunk_rows : {1, 3, 100}) {
    auto chunked = objective->Loss(params, chunk_rows * n);
    ASSERT_TRUE(chunked.ok()) << chunked.status();
    EXPECT_EQ(*chunked, full->loss) << chunk_rows << " rows per chunk";
  }
  FlatQuantParams singular = params;
  std::fill(singular.p1.begin(), singular.p1.end(), 0.0);
  EXPECT_FALSE(objective->Loss(singular).ok());
}

// Every value of the parameters, for exact comparisons.
std::vector<double> AllValues(const FlatQuantParams& p) {
  std::vector<double> v = p.p1;
  v.insert(v.end(), p.p2.begin(), p.p2.end());
  v.insert(v.end(), p.log_scales.begin(), p.log_scales.end());
  v.push_back(p.activation_clip_logit);
  v.push_back(p.weight_clip_logit);
  return v;
}

TEST_F(FlatQuantTest, LossGradientAndTrainingAreBitIdenticalAtAnyThreadCount) {
  // n = n1 * n2 up to 320 (past the product's 256-deep blocks), sizes off its 4 x 8 tiles, and
  // grouped or per-channel weights.
  const int64_t n1 = UniformInt(2, 16), n2 = UniformInt(2, 20), n = n1 * n2;
  const int64_t m = UniformInt(5, 40), out = UniformInt(5, 90);
  const int64_t group = UniformInt(0, 1) == 1 ? n2 : 0;
  SCOPED_TRACE(testing::Message() << "n1 " << n1 << ", n2 " << n2 << ", rows " << m << ", out "
                                  << out << ", group " << group);
  const std::vector<float> x = Gaussian(m * n), w = Gaussian(out * n);
  const FlatQuantProblem problem{.inputs = x,
                                 .rows = m,
                                 .weight = w,
                                 .out_features = out,
                                 .in_features = n,
                                 .activation_bits = 4,
                                 .weight_bits = 4,
                                 .weight_group_size = group};
  const FlatQuantParams params = RandomParams(n1, n2, 0);
  std::vector<int64_t> subset;
  for (int64_t j = 0; j < out; j += UniformInt(1, 3)) subset.push_back(j);

  struct Results {
    double loss, chunked_loss, subset_loss, trained_loss;
    std::vector<double> gradient, subset_gradient, trained;
  };
  auto run = [&](int threads) -> std::optional<Results> {
    ThreadPool pool(threads);
    auto objective = FlatQuantObjective::Create(problem, &pool);
    EXPECT_TRUE(objective.ok()) << objective.status();
    auto full = objective->Evaluate(params, QuantizerMode::kSte);
    auto part = objective->Evaluate(params, QuantizerMode::kSte, nullptr, nullptr, subset);
    auto chunked = objective->Loss(params, 7 * n);
    FlatQuantOptions options{.steps = 5, .max_rows = 0, .output_rows_per_step = 16, .seed = 3};
    options.pool = &pool;
    auto trained = TrainFlatQuant(problem, options);
    EXPECT_TRUE(full.ok() && part.ok() && chunked.ok() && trained.ok());
    if (!full.ok() || !part.ok() || !chunked.ok() || !trained.ok()) return std::nullopt;
    return Results{full->loss,
                   *chunked,
                   part->loss,
                   trained->trained_loss,
                   AllValues(full->gradient),
                   AllValues(part->gradient),
                   AllValues(trained->params)};
  };
  const std::optional<Results> one = run(1);
  ASSERT_TRUE(one.has_value());
  EXPECT_EQ(one->chunked_loss, one->loss);
  for (int threads : {2, 3, 8}) {
    SCOPED_TRACE(testing::Message() << threads << " threads");
    const std::optional<Results> many = run(threads);
    ASSERT_TRUE(many.has_value());
    EXPECT_EQ(many->loss, one->loss);
    EXPECT_EQ(many->chunked_loss, one->chunked_loss);
    EXPECT_EQ(many->subset_loss, one->subset_loss);
    EXPECT_EQ(many->trained_loss, one->trained_loss);
    EXPECT_EQ(many->gradient, one->gradient);
    EXPECT_EQ(many->subset_gradient, one->subset_gradient);
    EXPECT_EQ(many->trained, one->trained);
  }
}

TEST_F(FlatQuantTest, SaveLoadRoundTripsAndPreservesTheLayer) {
  const int64_t n1 = UniformInt(2, 6), n2 = UniformInt(2, 6), n = n1 * n2, m = 4, out = 3;
  auto transform = FlatQuantInputTransform::FromParams(RandomParams(n1, n2, 0));
  ASSERT_TRUE(transform.ok()) << transform.status();
  const TransformState state = (*transform)->Save();
  EXPECT_EQ(state.kind, "flatquant");
  auto loaded = LoadInputTransform(state);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const std::vector<float> x = Gaussian(m * n), w = Gaussian(out * n);
  std::vector<float> tx(m * n), tx2(m * n), tw(out * n), tw2(out * n);
  (*transform)->ApplyToActivations(x, m, tx);
  (*loaded)->ApplyToActivations(x, m, tx2);
  (*transform)->TransformWeight(w, out, tw);
  (*loaded)->TransformWeight(w, out, tw2);
  EXPECT_EQ(tx, tx2);
  EXPECT_EQ(tw, tw2);
  const std::vector<double> expected = MatMulTransposed(x, w, m, out, n);
  const std::vector<double> actual = MatMulTransposed(tx, tw, m, out, n);
  const std::vector<double> scale = test_util::RowNormProducts(x, w, m, out, n);
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_NEAR(actual[i], expected[i], 1e-4 * scale[i]) << i;
  }
}

TEST(FlatQuantTransformErrors, BadStatesAreRejectedWithTheirField) {
  auto good = FlatQuantInputTransform::Create({1.0f, 2.0f, 0.5f, 1.0f}, 2, {1, 0, 0, 1}, 2,
                                              {0, 1, 1, 0}, 0.9f, 1.0f);
  ASSERT_TRUE(good.ok()) << good.status();
  TransformState state = (*good)->Save();
  TransformState missing = state;
  missing.arrays.erase("p2");
  EXPECT_NE(LoadInputTransform(missing).status().message().find("p2"), std::string::npos);
  TransformState singular = state;
  singular.arrays["p1"] = {1, 2, 2, 4};
  EXPECT_NE(LoadInputTransform(singular).status().message().find("singular"), std::string::npos);
  TransformState negative = state;
  negative.arrays["scales"][1] = -1.0f;
  EXPECT_NE(LoadInputTransform(negative).status().message().find("scale 1"), std::string::npos);
  TransformState clip = state;
  clip.params["activation_clip_ratio"] = 1.5;
  EXPECT_FALSE(LoadInputTransform(clip).ok());
  TransformState no_n1 = state;
  no_n1.params.erase("n1");
  EXPECT_NE(LoadInputTransform(no_n1).status().message().find("n1"), std::string::npos);
}

// Output MSE of the integer W4A4 path on fresh rows, relative to ||X W^T||^2.
double RelativeOutputError(const QuantizedLinear& layer, const std::vector<float>& x,
                           const std::vector<float>& w, int64_t m, int64_t out, int64_t n) {
  std::vector<float> y(m * out);
  EXPECT_TRUE(layer.Forward(x, m, y).ok());
  const std::vector<double> exact = MatMulTransposed(x, w, m, out, n);
  double err = 0.0, norm = 0.0;
  for (size_t i = 0; i < exact.size(); ++i) {
    err += (y[i] - exact[i]) * (y[i] - exact[i]);
    norm += exact[i] * exact[i];
  }
  return err / norm;
}

// Margins on random data, so a fixed seed: over 100 fresh seeds the held-out error ratios were
// 0.048 to 0.086 against identity and 0.052 to 0.139 against Hadamard (bound 0.5 each).
TEST_F(FlatQuantTest, TrainedTransformBeatsIdentityAndHadamardOnOutlierChannels) {
  UseFixedSeed(7919);
  const int64_t n = 64, out = 48, train_rows = 128, test_rows = 64;
  // Activations with 3 channels 30-60x the rest (fresh channels and factors per run).
  std::vector<int64_t> outliers = {UniformInt(0, 20), UniformInt(21, 42), UniformInt(43, 63)};
  std::vector<float> factors = {UniformFloat(30, 60), UniformFloat(30, 60), UniformFloat(30, 60)};
  auto make_rows = [&](int64_t rows) {
    std::vector<float> x = Gaussian(rows * n);
    for (int64_t r = 0; r < rows; ++r)
      for (size_t o = 0; o < outliers.size(); ++o) x[r * n + outliers[o]] *= factors[o];
    return x;
  };
  const std::vector<float> w = Gaussian(out * n, 0.1f);
  const std::vector<float> train = make_rows(train_rows), test = make_rows(test_rows);
  const Tensor weight({out, n}, w);

  auto rtn = RecipeByName("w4a4"), hadamard = RecipeByName("w4a4-hadamard"),
       flat = RecipeByName("w4a4-flatquant");
  ASSERT_TRUE(rtn.ok() && hadamard.ok() && flat.ok());
  auto identity_layer = QuantizedLinear::Create(weight, nullptr, *rtn, nullptr);
  auto hadamard_layer = QuantizedLinear::Create(weight, nullptr, *hadamard, nullptr);
  ActivationCalibration calibration;
  calibration.Record(train, train_rows, n);
  calibration.RecordRaw(train, train_rows, n);
  auto flat_layer = BuildCalibratedLinear(weight, nullptr, *flat, &calibration, {});
  ASSERT_TRUE(identity_layer.ok() && hadamard_layer.ok());
  ASSERT_TRUE(flat_layer.ok()) << flat_layer.status();
  EXPECT_EQ(flat_layer->transforms().transforms().front()->kind(), "flatquant");

  const double e_identity = RelativeOutputError(*identity_layer, test, w, test_rows, out, n);
  const double e_hadamard = RelativeOutputError(*hadamard_layer, test, w, test_rows, out, n);
  const double e_flat = RelativeOutputError(*flat_layer, test, w, test_rows, out, n);
  RecordProperty("identity", std::to_string(e_identity));
  RecordProperty("hadamard", std::to_string(e_hadamard));
  RecordProperty("flatquant", std::to_string(e_flat));
  std::printf(
      "relative output MSE on held-out rows: identity %.4g, hadamard %.4g, flatquant %.4g\n",
      e_identity, e_hadamard, e_flat);
  std::printf("[ ratio    ] %.4f %.4f\n", e_flat / e_identity, e_flat / e_hadamard);
  EXPECT_LT(e_flat, 0.5 * e_identity);
  EXPECT_LT(e_flat, 0.5 * e_hadamard);

  // The kept transform is never worse than the initialisation on the calibration rows.
  FlatQuantProblem problem{
      .inputs = train, .rows = train_rows, .weight = w, .out_features = out, .in_features = n};
  auto trained = TrainFlatQuant(problem, RecipeFlatQuantOptions(*flat));
  ASSERT_TRUE(trained.ok()) << trained.status();
  EXPECT_EQ(trained->final_loss, std::min(trained->initial_loss, trained->trained_loss));
}

// The same outlier problem from one fixed seed: training itself (the final iterate, before the
// keep-the-better choice) lowers the calibration loss by at least 10%. Measured: 0.001741 ->
// 0.001404 (-19%) for this seed (the computation is deterministic double arithmetic); over 60
// fresh seeds of the test above the drop ranged 0-36%, which is why a fresh seed cannot carry a
// margin.
TEST(FlatQuantTrainingTest, TrainingLowersTheLossOnAFixedSeed) {
  constexpr uint64_t kSeed = 7;
  std::mt19937_64 rng(kSeed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t n = 64, out = 48, rows = 128;
  std::vector<float> x(rows * n), w(out * n);
  for (float& v : x) v = normal(rng);
  for (float& v : w) v = 0.1f * normal(rng);
  for (int64_t r = 0; r < rows; ++r) {
    x[r * n + 5] *= 40.0f;
    x[r * n + 30] *= 55.0f;
    x[r * n + 50] *= 35.0f;
  }
  auto flat = RecipeByName("w4a4-flatquant");
  ASSERT_TRUE(flat.ok());
  FlatQuantProblem problem{
      .inputs = x, .rows = rows, .weight = w, .out_features = out, .in_features = n};
  auto trained = TrainFlatQuant(problem, RecipeFlatQuantOptions(*flat));
  ASSERT_TRUE(trained.ok()) << trained.status();
  std::printf("calibration loss: initial %.4g, trained %.4g\n", trained->initial_loss,
              trained->trained_loss);
  EXPECT_LT(trained->trained_loss, 0.9 * trained->initial_loss);
  EXPECT_EQ(trained->final_loss, trained->trained_loss);

  // A step that cannot be taken is an error naming the step, not a silent fallback to the
  // initialisation: a non-finite learning rate makes the first update's parameters NaN.
  FlatQuantOptions broken = RecipeFlatQuantOptions(*flat);
  broken.learning_rate = std::numeric_limits<double>::quiet_NaN();
  auto failed = TrainFlatQuant(problem, broken);
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.status().message().find("FlatQuant training step"), std::string::npos)
      << failed.status();
}

TEST(FlatQuantLayerErrors, NeedsCalibrationRows) {
  auto flat = RecipeByName("w4a4-flatquant");
  ASSERT_TRUE(flat.ok()) << flat.status();
  const Tensor weight({4, 16}, std::vector<float>(64, 0.5f));
  auto layer = BuildCalibratedLinear(weight, nullptr, *flat, nullptr, {});
  EXPECT_TRUE(absl::IsFailedPrecondition(layer.status())) << layer.status();
}

}  // namespace
}  // namespace flatfleet::quant
