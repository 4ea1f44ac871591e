#include "agent/runner.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/base/log.h"

namespace strata::agent {
namespace {

// The output file is cut back to its tail beyond this.
constexpr int64_t kTrimOutputAbove = 1 << 20;
constexpr absl::Duration kKillGrace = absl::Seconds(10);
constexpr absl::Duration kPoll = absl::Milliseconds(100);

// Runs the command, then writes its exit code (a killed job writes none).
constexpr char kWrapper[] = "/bin/sh -c \"$1\"; rc=$?; echo $rc > \"$2\"; exit $rc";
// The same with a lease ($3): the command in the background, a watchdog
// beside it (immune to the TERM it sends its own group) that ends the whole
// group once the time in the lease file has passed.
constexpr char kLeasedWrapper[] =
    "/bin/sh -c \"$1\" & c=$!; "
    "(trap '' TERM; while sleep 1; do u=$(cat \"$3\" 2>/dev/null); "
    "[ \"$(date +%s)\" -lt \"${u:-0}\" ] 2>/dev/null && continue; "
    "echo \"[strata: lease ended: the job is stopped]\" >&2; kill -TERM 0; sleep 5; kill -KILL 0; "
    "done) & d=$!; "
    "wait $c; rc=$?; kill -KILL $d 2>/dev/null; echo $rc > \"$2\"; exit $rc";

struct Account {
  uid_t uid = 0;
  gid_t gid = 0;
  std::string name = "root", home = "/root";
  std::vector<gid_t> groups;
};

absl::StatusOr<Account> LookUp(const std::string& user) {
  Account a;
  if (user.empty() || user == "root") return a;
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  if (getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr)
    return absl::FailedPreconditionError(absl::StrCat("no local user \"", user, "\" to run as"));
  a.uid = pw.pw_uid;
  a.gid = pw.pw_gid;
  a.name = pw.pw_name;
  a.home = pw.pw_dir;
  int n = 64;
  a.groups.resize(n);
  if (getgrouplist(pw.pw_name, pw.pw_gid, a.groups.data(), &n) < 0) {
    a.groups.resize(n);
    getgrouplist(pw.pw_name, pw.pw_gid, a.groups.data(), &n);
  }
  a.groups.resize(n);
  return a;
}

void TrimOutput(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0 || st.st_size <= kTrimOutputAbove) return;
  const std::string tail = FileTail(path, kMaxOutputBytes);
  int fd = open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd < 0) return;
  // The job appends meanwhile: what it wrote between the read and the cut
  // is lost, and the cut says so.
  if (ftruncate(fd, 0) == 0) {
    const std::string text =
        absl::StrCat("[strata: output cut to its last ", kMaxOutputBytes, " bytes]\n", tail);
    (void)!write(fd, text.data(), text.size());
  }
  close(fd);
}

bool ReadExitCode(const std::string& path, int* code) {
  std::ifstream in(path);
  std::string text;
  if (!in || !std::getline(in, text)) return false;
  return absl::SimpleAtoi(absl::StripAsciiWhitespace(text), code);
}

// Kills every process of the job's group: TERM, then KILL after a grace.
void KillGroup(const Job& job, bool child) {
  kill(-job.pid, SIGTERM);
  const absl::Time until = absl::Now() + kKillGrace;
  while (absl::Now() < until) {
    if (kill(-job.pid, 0) != 0) return;  // the whole group is gone
    if (child) waitpid(job.pid, nullptr, WNOHANG);
    absl::SleepFor(kPoll);
  }
  kill(-job.pid, SIGKILL);
  if (child) waitpid(job.pid, nullptr, 0);
}

RunResult Wait(const RunSpec& spec, const Job& job, bool child, const std::atomic<bool>* stop) {
  RunResult out;
  int status = 0;
  bool reaped = false;
  while (true) {
    if (child) {
      if (waitpid(job.pid, &status, WNOHANG) == job.pid) {
        reaped = true;
        break;
      }
    } else if (job.pid <= 0 || ProcessStartTicks(job.pid) != job.start_ticks) {
      break;  // gone (or the pid is another process now)
    }
    TrimOutput(spec.output_path);
    if (absl::Now() >= job.deadline) {
      KillGroup(job, child);
      out.timed_out = true;
      break;
    }
    if (stop != nullptr && stop->load()) {
      out.abandoned = true;
      return out;
    }
    absl::SleepFor(kPoll);
  }
  TrimOutput(spec.output_path);
  if (!out.timed_out && ReadExitCode(spec.exit_path, &out.exit_code)) {
    out.exited = true;
    int code = 0;
    if (!spec.return_code_path.empty() && ReadExitCode(spec.return_code_path, &code))
      out.exit_code = code;
  } else if (reaped && WIFSIGNALED(status)) {
    out.exit_code = 128 + WTERMSIG(status);
  }
  out.output_tail = FileTail(spec.output_path, kMaxOutputBytes);
  // Longer than the tail kept, or cut down already (the cut leaves its mark
  // and the tail: longer too).
  struct stat st {};
  out.output_truncated = stat(spec.output_path.c_str(), &st) == 0 && st.st_size > kMaxOutputBytes;
  return out;
}

}  // namespace

uint64_t ProcessStartTicks(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string text;
  if (!in || !std::getline(in, text)) return 0;
  const size_t paren = text.rfind(')');
  if (paren == std::string::npos) return 0;
  std::vector<std::string> fields = absl::StrSplit(text.substr(paren + 1), ' ', absl::SkipEmpty());
  // Fields from 3 (state) on; the start time is field 22.
  uint64_t ticks = 0;
  if (fields.size() < 20 || !absl::SimpleAtoi(fields[19], &ticks)) return 0;
  // A zombie has ended: its exit code is already written.
  if (fields[0] == "Z") return 0;
  return ticks;
}

std::string FileTail(const std::string& path, int64_t max) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  struct stat st {};
  std::string out;
  if (fstat(fd, &st) == 0) {
    const int64_t from = std::max<int64_t>(0, st.st_size - max);
    out.resize(static_cast<size_t>(st.st_size - from));
    ssize_t n = pread(fd, out.data(), out.size(), from);
    out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  }
  close(fd);
  return out;
}

absl::StatusOr<RunResult> Run(const RunSpec& spec, const std::function<void(const Job&)>& started,
                              const std::atomic<bool>* stop) {
  auto account = LookUp(spec.user);
  if (!account.ok()) return account.status();
  unlink(spec.exit_path.c_str());
  if (!spec.return_code_path.empty()) unlink(spec.return_code_path.c_str());
  const int out_fd =
      open(spec.output_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (out_fd < 0) return absl::InternalError(absl::StrCat(spec.output_path, ": ", strerror(errno)));
  int stdout_fd = out_fd;
  if (!spec.stdout_path.empty()) {
    stdout_fd = open(spec.stdout_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (stdout_fd < 0) {
      close(out_fd);
      return absl::InternalError(absl::StrCat(spec.stdout_path, ": ", strerror(errno)));
    }
  }
  const int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (account->uid != 0) {
    // The job writes its output and exit code as its user.
    (void)!fchown(out_fd, account->uid, account->gid);
    if (stdout_fd != out_fd) (void)!fchown(stdout_fd, account->uid, account->gid);
    // The wrapper writes the exit code (and the job its return code) as the
    // user, in a folder it need not own: the files are made for it here
    // (empty: no code yet).
    for (const std::string* path : {&spec.exit_path, &spec.return_code_path}) {
      if (path->empty()) continue;
      const int fd = open(path->c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (fd >= 0) {
        (void)!fchown(fd, account->uid, account->gid);
        close(fd);
      }
    }
    (void)!chown(spec.dir.c_str(), account->uid, account->gid);
  }
  // Everything the child needs, made before fork (it may only make
  // async-signal-safe calls).
  std::vector<std::string> env = {
      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8",
      "HOME=" + account->home, "USER=" + account->name, "LOGNAME=" + account->name};
  if (!spec.return_code_path.empty())
    env.push_back("STRATA_RETURN_CODE_FILE=" + spec.return_code_path);
  env.insert(env.end(), spec.env.begin(), spec.env.end());
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string sh = "/bin/sh", c = "-c", name = "strata-job";
  std::string wrapper = spec.lease_path.empty() ? kWrapper : kLeasedWrapper;
  std::string command = spec.command, exit_path = spec.exit_path, lease = spec.lease_path;
  char* argv[] = {sh.data(),
                  c.data(),
                  wrapper.data(),
                  name.data(),
                  command.data(),
                  exit_path.data(),
                  spec.lease_path.empty() ? nullptr : lease.data(),
                  nullptr};
  const std::string dir = spec.dir;
  // Without close_range (kernels before 5.9), every descriptor up to the
  // limit is closed one by one.
  rlimit files{};
  const int max_fd = getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur != RLIM_INFINITY
                         ? static_cast<int>(std::min<rlim_t>(files.rlim_cur, 1 << 20))
                         : 65536;

  // The child runs the command only once `started` has recorded it (the
  // agent's journal): an agent that dies before then leaves no job behind.
  int go[2];
  if (pipe2(go, O_CLOEXEC) != 0) {
    close(out_fd);
    if (stdout_fd != out_fd) close(stdout_fd);
    if (null_fd >= 0) close(null_fd);
    return absl::ResourceExhaustedError(absl::StrCat("pipe: ", strerror(errno)));
  }
  const pid_t pid = fork();
  if (pid < 0) {
    close(out_fd);
    if (stdout_fd != out_fd) close(stdout_fd);
    if (null_fd >= 0) close(null_fd);
    close(go[0]);
    close(go[1]);
    return absl::ResourceExhaustedError(absl::StrCat("fork: ", strerror(errno)));
  }
  if (pid == 0) {
    close(go[1]);
    char byte = 0;
    if (read(go[0], &byte, 1) != 1) _exit(125);  // the agent is gone: no job
    setsid();  // a session and process group of its own: the whole job
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int s = 1; s < NSIG; ++s) signal(s, SIG_DFL);
    if (null_fd >= 0) dup2(null_fd, 0);
    dup2(stdout_fd, 1);
    dup2(out_fd, 2);
    if (chdir(dir.c_str()) != 0) _exit(127);
    if (account->uid != 0) {
      if (setgroups(account->groups.size(), account->groups.data()) != 0 ||
          setgid(account->gid) != 0 || setuid(account->uid) != 0)
        _exit(126);
    }
    if (syscall(SYS_close_range, 3u, ~0u, 0u) != 0)
      for (int fd = 3; fd < max_fd; ++fd) close(fd);
    execve(argv[0], argv, envp.data());
    _exit(127);
  }
  close(out_fd);
  if (stdout_fd != out_fd) close(stdout_fd);
  if (null_fd >= 0) close(null_fd);
  close(go[0]);
  Job job;
  job.pid = pid;
  // A job that already ended reads as 0 (a zombie): any other value tells
  // Adopt it is gone, as it is.
  job.start_ticks = std::max<uint64_t>(ProcessStartTicks(pid), 1);
  job.deadline = absl::Now() + spec.timeout;
  if (started) started(job);
  const char byte = 1;
  (void)!write(go[1], &byte, 1);  // recorded: run
  close(go[1]);
  return Wait(spec, job, /*child=*/true, stop);
}

RunResult Adopt(const RunSpec& spec, const Job& job, const std::atomic<bool>* stop) {
  return Wait(spec, job, /*child=*/false, stop);
}

}  // namespace strata::agent
