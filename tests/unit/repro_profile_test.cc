// SPDX-License-Identifier: Apache-2.0
// Issue 15, item 1: profile inputs a fuzzing review found to crash, hang or abort
// agentcage (tests/unit/fixtures/repro/, from ../shared/repro): each resolves to a clear
// error naming the file (and line where there is one), or to a valid profile. Run in
// unit_tests and, with the policy layer under ASan+UBSan, in repro_sanitized_tests.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "core/policy/profile.h"
#include "core/policy/profile_seccomp.h"

namespace agentcage::core {
namespace {

const std::string kRepro = std::string(AGENTCAGE_SOURCE_DIR) + "/tests/unit/fixtures/repro";

ProfileVars vars() { return ProfileVars{"/WORKSPACE", "/home/u", "u", "/tmp"}; }

std::string resolve_error(const std::string& path) {
  auto r = resolve_profile(path, vars());
  return r ? std::string() : r.error().message();
}

TEST(ReproProfile, DeepSeccompJsonIsAnErrorNotAStackOverflow) {
  for (const char* f : {"seccomp_deep.yaml", "seccomp_deep_names.yaml"}) {
    auto e = resolve_error(kRepro + "/" + f);
    EXPECT_NE(e.find("nested deeper than"), std::string::npos) << f << ": " << e;
    EXPECT_NE(e.find(std::string(f) + ":3:"), std::string::npos) << e;  // the profile's line
  }
}

TEST(ReproProfile, NumberOverflowingADoubleIsAnErrorNotAnAbort) {
  auto e = resolve_error(kRepro + "/seccomp_number_overflow.yaml");
  EXPECT_NE(e.find("number overflow"), std::string::npos) << e;
  auto j = parse_oci_seccomp(kRepro + "/seccomp_json_number_overflow.json");
  EXPECT_FALSE(j.has_value());
}

TEST(ReproProfile, DocumentStartingWithACommaIsAnErrorNotAnEndlessLoop) {
  for (const char* f : {"yaml_comma.yaml", "yaml_comma_fuzz_timeout.yaml"}) {
    auto e = resolve_error(kRepro + "/" + f);
    EXPECT_NE(e.find(std::string(f) + ":1:1: YAML syntax error: a document cannot start with ','"), std::string::npos)
        << e;
  }
}

TEST(ReproProfile, ACommaAfterATopLevelNodeIsAnErrorNotAnEndlessLoop) {
  auto e = resolve_error(kRepro + "/yaml_comma_after_sequence.yaml");
  EXPECT_NE(e.find("yaml_comma_after_sequence.yaml:4:1: expected one YAML document"), std::string::npos) << e;
}

TEST(ReproProfile, BytesThatAreNotUtf8AreAnErrorNamingTheLine) {
  char tmpl[] = "/tmp/agentcage-repro-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string f = std::string(tmpl) + "/p.yaml";
  std::ofstream(f) << "name: p\nnetwork:\n  rules:\n    - {cidr: 10.0.0.0/8, comment: \"HT\xfe\xffTP\"}\n";
  auto e = resolve_error(f);
  EXPECT_NE(e.find("p.yaml:4:38: byte 0xfe is not UTF-8"), std::string::npos) << e;
  unlink(f.c_str());
  rmdir(tmpl);
}

TEST(ReproProfile, ControlBytesInDiagnosticsAreEscaped) {
  auto e = resolve_error(kRepro + "/diag_escape.yaml");
  EXPECT_FALSE(e.empty());
  EXPECT_EQ(e.find('\x1b'), std::string::npos) << e;
  EXPECT_NE(e.find("\\x1b"), std::string::npos) << e;
}

TEST(ReproProfile, TheUseAfterScopeProfileResolves) {
  auto r = resolve_profile(kRepro + "/profile_use_after_scope.yaml", vars());
  EXPECT_TRUE(r.has_value()) << r.error().message();
}

// The fuzz harness's first find (tests/fuzz/fuzz_profile.cc): a map value that is not a
// scalar (env_set_value_list.yaml) read a yaml-cpp proxy after its scope. Every unit
// fixture is resolved here so the sanitized binary sees each of them.
TEST(ReproProfile, EveryUnitFixtureResolvesOrIsAClearError) {
  int n = 0;
  for (const auto& dir : {std::string(AGENTCAGE_SOURCE_DIR) + "/tests/unit/fixtures/profiles", kRepro})
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
      if (e.path().extension() != ".yaml") continue;
      ++n;
      auto r = resolve_profile(e.path(), vars());
      if (!r) {
        EXPECT_FALSE(r.error().message().empty()) << e.path();
      }
    }
  EXPECT_GE(n, 50);
}

TEST(ReproProfile, FifoDevZeroAndSparseFilesAreRefusedWithoutReading) {
  char tmpl[] = "/tmp/agentcage-repro-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  ASSERT_EQ(mkfifo((dir + "/fifo.json").c_str(), 0600), 0);
  ASSERT_EQ(truncate(std::string(dir + "/sparse.yaml").c_str(), 0), -1);  // does not exist yet
  { std::ofstream(dir + "/sparse.yaml"); }
  ASSERT_EQ(truncate((dir + "/sparse.yaml").c_str(), 3ll << 30), 0);
  EXPECT_NE(resolve_error(dir + "/sparse.yaml").find("bytes; at most"), std::string::npos);
  for (const std::string& target : {dir + "/fifo.json", std::string("/dev/zero")}) {
    std::ofstream(dir + "/p.yaml") << "name: p\nsyscalls:\n  seccomp_json: " << target << "\n";
    auto e = resolve_error(dir + "/p.yaml");  // returns: a FIFO with no writer would block a plain open
    EXPECT_NE(e.find("not a regular file"), std::string::npos) << target << ": " << e;
  }
  unlink((dir + "/fifo.json").c_str());
  unlink((dir + "/sparse.yaml").c_str());
  unlink((dir + "/p.yaml").c_str());
  rmdir(dir.c_str());
}

}  // namespace
}  // namespace agentcage::core
