// Throwaway TLS material for the security tests, made by make_test_certs.sh with the openssl
// command-line tool in a fresh temporary directory.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace flatfleet::security::testing_util {

// The directory holding ca.pem, server.{pem,key}, client.{pem,key}, other-ca.pem and
// other-client.{pem,key}; empty (with a test failure) when openssl failed.
inline std::string MakeTestCertificates() {
  std::random_device entropy;
  const std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) /
                                    absl::StrCat("flatfleet_certs_", getpid(), "_", entropy());
  const std::string command =
      absl::StrCat(FLATFLEET_SOURCE_DIR, "/tests/security/make_test_certs.sh '", dir.string(),
                   "' > '", dir.string(), ".log' 2>&1");
  const int status = std::system(command.c_str());
  EXPECT_EQ(status, 0) << command << " failed; see " << dir.string() << ".log";
  return status == 0 ? dir.string() : std::string();
}

// Random printable token of `length` characters (no whitespace).
inline std::string RandomToken(std::mt19937_64& random, size_t length = 32) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/";
  std::uniform_int_distribution<size_t> pick(0, sizeof(kAlphabet) - 2);
  std::string token;
  for (size_t i = 0; i < length; ++i) token += kAlphabet[pick(random)];
  return token;
}

}  // namespace flatfleet::security::testing_util
