// Credential files, token checks and the constant-time comparison.
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "security/constant_time.h"
#include "security/metadata_auth.h"
#include "security/secret_files.h"
#include "security/security_flags.h"
#include "security/tls_files.h"
#include "tests/security/test_certificates.h"
#include "absl/strings/str_cat.h"
#include "tests/quant/test_random.h"

namespace flatfleet::security {
namespace {

using ::testing::HasSubstr;
using testing_util::MakeTestCertificates;
using testing_util::RandomToken;

std::string WriteFile(const std::string& name, const std::string& contents) {
  const std::filesystem::path path =
      std::filesystem::path(::testing::TempDir()) / absl::StrCat(name, "_", getpid());
  std::ofstream(path, std::ios::binary) << contents;
  return path.string();
}

TEST(ConstantTimeEqualsTest, AgreesWithOrdinaryEquality) {
  const uint64_t seed = quant::test_util::FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 random(seed);
  for (int i = 0; i < 200; ++i) {
    const std::string a = RandomToken(random, 1 + random() % 40);
    std::string b = a;
    EXPECT_TRUE(ConstantTimeEquals(a, b));
    b[random() % b.size()] ^= 1 + random() % 3;  // Always a different byte.
    EXPECT_FALSE(ConstantTimeEquals(b, a));
    EXPECT_FALSE(ConstantTimeEquals(a.substr(0, a.size() - 1), a));
    EXPECT_FALSE(ConstantTimeEquals(a + "x", a));
  }
  EXPECT_FALSE(ConstantTimeEquals("", "secret"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
}

TEST(TokenFileTest, ReadsTokensSkippingCommentsAndBlankLines) {
  const uint64_t seed = quant::test_util::FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 random(seed);
  const std::string first = RandomToken(random), second = RandomToken(random);
  const std::string path =
      WriteFile("tokens", absl::StrCat("# team A\n  ", first, "  \n\n", second, "\r\n# the end\n"));
  absl::StatusOr<std::vector<std::string>> tokens = ReadTokenFile(path, "--api-token-file");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_THAT(*tokens, ::testing::ElementsAre(first, second));
  // A client needs exactly one.
  absl::StatusOr<std::string> single = ReadSingleToken(path, "--api-token-file");
  EXPECT_THAT(single.status().message(), HasSubstr("holds 2 tokens"));
}

TEST(TokenFileTest, ErrorsNameTheFile) {
  absl::StatusOr<std::vector<std::string>> missing =
      ReadTokenFile("/nonexistent/tokens.txt", "--api-token-file");
  EXPECT_THAT(missing.status().message(),
              HasSubstr("cannot read --api-token-file /nonexistent/tokens.txt"));
  const std::string empty = WriteFile("empty_tokens", "# nothing here\n\n");
  EXPECT_THAT(ReadTokenFile(empty, "--api-token-file").status().message(),
              HasSubstr(empty + " holds no token"));
  const std::string spaced = WriteFile("spaced_tokens", "good\nnot one token\n");
  EXPECT_THAT(ReadTokenFile(spaced, "--cluster-secret-file").status().message(),
              HasSubstr(spaced + " line 2"));
}

TEST(CallMetadataTest, BearerTokensAreCheckedExceptOnHealthAndReflection) {
  const uint64_t seed = quant::test_util::FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 random(seed);
  const std::string token = RandomToken(random), other = RandomToken(random);
  const MetadataAuthPolicy policy = BearerTokenPolicy({token, other});
  const std::string method = "/flatfleet.v1.BatchService/GetBatch";
  const std::string bearer = "Bearer " + token;
  EXPECT_TRUE(CheckCallMetadata(policy, method, {bearer}).ok());
  const std::string second = "bearer " + other;  // The scheme is case-insensitive.
  EXPECT_TRUE(CheckCallMetadata(policy, method, {second}).ok());

  const absl::Status missing = CheckCallMetadata(policy, method, {});
  EXPECT_EQ(missing.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(missing.message(), HasSubstr("missing credentials for " + method));
  EXPECT_THAT(missing.message(), HasSubstr("FLATFLEET_API_TOKEN"));
  const std::string wrong = "Bearer " + token.substr(0, token.size() - 1);
  EXPECT_THAT(CheckCallMetadata(policy, method, {wrong}).message(),
              HasSubstr("invalid credentials"));
  EXPECT_THAT(CheckCallMetadata(policy, method, {token}).message(), HasSubstr("malformed"));
  EXPECT_EQ(CheckCallMetadata(policy, method, {bearer, bearer}).code(),
            absl::StatusCode::kUnauthenticated);

  EXPECT_TRUE(CheckCallMetadata(policy, "/grpc.health.v1.Health/Check", {}).ok());
  EXPECT_TRUE(CheckCallMetadata(policy, "/grpc.health.v1.Health/Watch", {}).ok());
  EXPECT_TRUE(CheckCallMetadata(
                  policy, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", {})
                  .ok());
  // A look-alike of an exempt service is not exempt.
  EXPECT_FALSE(CheckCallMetadata(policy, "/grpc.health.v1.HealthX/Check", {}).ok());
  // Disabled without tokens.
  EXPECT_TRUE(CheckCallMetadata(MetadataAuthPolicy(), method, {}).ok());
}

TEST(CallMetadataTest, ClusterSecretHasNoPrefix) {
  const uint64_t seed = quant::test_util::FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 random(seed);
  const std::string secret = RandomToken(random, 48);
  const MetadataAuthPolicy policy = ClusterSecretPolicy(secret);
  EXPECT_EQ(policy.header, kClusterSecretHeader);
  const std::string method = "/flatfleet.v1.WorkerService/RunWork";
  EXPECT_TRUE(CheckCallMetadata(policy, method, {secret}).ok());
  const absl::Status wrong = CheckCallMetadata(policy, method, {RandomToken(random, 48)});
  EXPECT_EQ(wrong.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(wrong.message(), HasSubstr("--cluster-secret-file"));
}

TEST(TlsFilesTest, LoadsMatchingCertificateAndKey) {
  const std::string dir = MakeTestCertificates();
  ASSERT_FALSE(dir.empty());
  absl::StatusOr<TlsIdentity> identity =
      LoadTlsIdentity(dir + "/server.pem", dir + "/server.key", "--tls");
  ASSERT_TRUE(identity.ok()) << identity.status();
  EXPECT_THAT(identity->cert_chain_pem, HasSubstr("BEGIN CERTIFICATE"));
  EXPECT_THAT(identity->private_key_pem, HasSubstr("PRIVATE KEY"));
  absl::StatusOr<std::string> ca = LoadCertificates(dir + "/ca.pem", "--tls-ca");
  ASSERT_TRUE(ca.ok()) << ca.status();
}

TEST(TlsFilesTest, BadFilesGetErrorsNamingThem) {
  const std::string dir = MakeTestCertificates();
  ASSERT_FALSE(dir.empty());
  // Unreadable.
  absl::Status missing = LoadTlsIdentity(dir + "/nope.pem", dir + "/server.key", "--tls").status();
  EXPECT_THAT(missing.message(), HasSubstr("cannot read --tls-cert " + dir + "/nope.pem"));
  // Not a certificate (a key in its place), and garbage.
  absl::Status swapped =
      LoadTlsIdentity(dir + "/server.key", dir + "/server.key", "--tls").status();
  EXPECT_THAT(swapped.message(), HasSubstr("--tls-cert " + dir + "/server.key"));
  EXPECT_THAT(swapped.message(), HasSubstr("not a PEM certificate"));
  const std::string garbage = WriteFile("garbage.pem",
                                        "-----BEGIN CERTIFICATE-----\nnot base64"
                                        "!!\n-----END CERTIFICATE-----\n");
  EXPECT_THAT(LoadCertificates(garbage, "--tls-ca").status().message(),
              HasSubstr("--tls-ca " + garbage + " is not a PEM certificate"));
  // Not a key.
  absl::Status not_key =
      LoadTlsIdentity(dir + "/server.pem", dir + "/server.pem", "--tls").status();
  EXPECT_THAT(not_key.message(), HasSubstr("--tls-key " + dir + "/server.pem is not"));
  // A key of another certificate.
  absl::Status mismatch =
      LoadTlsIdentity(dir + "/server.pem", dir + "/client.key", "--cluster-tls").status();
  EXPECT_THAT(mismatch.message(), HasSubstr("--cluster-tls-key " + dir +
                                            "/client.key does not match the "
                                            "certificate in --cluster-tls-cert " +
                                            dir + "/server.pem"));
  // Half a pair.
  EXPECT_THAT(LoadTlsIdentity(dir + "/server.pem", "", "--tls").status().message(),
              HasSubstr("--tls-cert and --tls-key go together"));
}

TEST(SecurityFlagsTest, FlagCombinationsAreChecked) {
  const std::string dir = MakeTestCertificates();
  ASSERT_FALSE(dir.empty());
  ClusterFlags partial;
  partial.tls_cert = dir + "/client.pem";
  partial.tls_key = dir + "/client.key";
  EXPECT_THAT(LoadClusterClientSecurity(partial).status().message(),
              HasSubstr("--cluster-tls-ca go together"));
  ApiClientFlags name_only;
  name_only.tls_server_name = "localhost";
  EXPECT_THAT(LoadApiClientSecurity(name_only, nullptr).status().message(),
              HasSubstr("--tls-server-name needs --tls-ca"));

  const uint64_t seed = quant::test_util::FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 random(seed);
  const std::string token = RandomToken(random);
  absl::StatusOr<ChannelSecurity> from_env = LoadApiClientSecurity(ApiClientFlags(), token.c_str());
  ASSERT_TRUE(from_env.ok()) << from_env.status();
  ASSERT_EQ(from_env->call_metadata.count("authorization"), 1u);
  EXPECT_EQ(from_env->call_metadata.find("authorization")->second, "Bearer " + token);
  EXPECT_FALSE(from_env->server_ca_pem.has_value());
  EXPECT_FALSE(LoadApiClientSecurity(ApiClientFlags(), "two words").ok());

  EXPECT_TRUE(IsLoopbackAddress("127.0.0.1:7070"));
  EXPECT_TRUE(IsLoopbackAddress("[::1]:7070"));
  EXPECT_TRUE(IsLoopbackAddress("localhost:0"));
  EXPECT_FALSE(IsLoopbackAddress("0.0.0.0:7070"));
  EXPECT_FALSE(IsLoopbackAddress("worker-0.flatfleet:7071"));
}

}  // namespace
}  // namespace flatfleet::security
