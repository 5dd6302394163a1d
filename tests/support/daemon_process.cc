// SPDX-License-Identifier: Apache-2.0
#include "support/daemon_process.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "support/subprocess.h"

namespace agentcage::testing {

DaemonProcess::~DaemonProcess() {
  if (pid_ > 0) stop();
}

std::string DaemonProcess::start(const std::vector<std::string>& extra) {
  dir_ = temp_dir();
  ::chmod(dir_.c_str(), 0755);
  make_reachable(AGENTCAGE_BIN);
  sock_ = dir_ + "/agentcage.sock";
  std::vector<std::string> argv{AGENTCAGED_BIN, "--socket", sock_, "--audit-db", dir_ + "/audit.db"};
  for (auto& a : daemon_state_args(dir_)) argv.push_back(a);
  argv.insert(argv.end(), extra.begin(), extra.end());
  pid_ = testing::start(argv, dir_ + "/daemon.log");
  for (int i = 0; i < 500 && ::access(sock_.c_str(), F_OK) != 0; ++i) {
    if (!pid_alive(pid_)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (::access(sock_.c_str(), F_OK) != 0) return "agentcaged did not listen on " + sock_ + ":\n" + log();
  return {};
}

int DaemonProcess::stop() {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  int st = wait_status(pid_);
  pid_ = -1;
  remove_daemon_pins(dir_);  // none after a clean stop; a crashed daemon's would stay attached
  return st;
}

std::string DaemonProcess::log() const {
  std::ifstream f(dir_ + "/daemon.log");
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

std::vector<std::string> as_nobody(const std::vector<std::string>& argv) {
  std::vector<std::string> out{"setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups", "--"};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

void make_reachable(const std::string& path) {
  for (std::string p = path; p.size() > 1; p = p.substr(0, p.rfind('/'))) {
    struct stat st;
    if (::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) ::chmod(p.c_str(), st.st_mode | 0005);
  }
}

}  // namespace agentcage::testing
