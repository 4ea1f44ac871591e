// wan_relay: a TCP relay that makes a WAN link of a loopback or LAN path
// for tests/multihost_test.sh, where the kernel has no netem: every byte is
// held back `--delay-ms` each way (so the RTT grows by twice that), and a
// read is, with probability `--loss`, held back `--stall-ms` more, as a TCP
// retransmission after a lost segment would. Order is kept; nothing is
// dropped (a relay cannot lose bytes inside a TCP stream; the stall is what
// a loss costs the application). Test code, not product code.
//
//   wan_relay --listen 10.0.0.2:7002 --to 10.0.0.2:7001 --delay-ms 75 --loss 0.01

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <random>
#include <string>

#include "CLI/CLI.hpp"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string listen, to;
  int delay_ms = 75;
  double loss = 0.01;
  int stall_ms = 300;
  unsigned seed = 1;
};

Options g_options;
event_base* g_base = nullptr;
std::mt19937 g_random;
sockaddr_in g_upstream{};

bool ParseAddress(const std::string& text, sockaddr_in* out) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos) return false;
  std::memset(out, 0, sizeof *out);
  out->sin_family = AF_INET;
  out->sin_port = htons(static_cast<uint16_t>(std::atoi(text.c_str() + colon + 1)));
  return inet_pton(AF_INET, text.substr(0, colon).c_str(), &out->sin_addr) == 1;
}

struct Pair;

// One direction: bytes read from `from`, released to `to` when due.
struct Direction {
  Pair* pair = nullptr;
  bufferevent* from = nullptr;
  bufferevent* to = nullptr;
  struct Chunk {
    Clock::time_point due;
    evbuffer* data;
  };
  std::deque<Chunk> queue;
  Clock::time_point last_due{};
  event* timer = nullptr;
  size_t queued_bytes = 0;
};

struct Pair {
  Direction up, down;  // client -> server, server -> client
  bool closing = false;
};

void Free(Pair* p) {
  for (Direction* d : {&p->up, &p->down}) {
    for (auto& c : d->queue) evbuffer_free(c.data);
    if (d->timer) event_free(d->timer);
  }
  if (p->up.from) bufferevent_free(p->up.from);
  if (p->down.from) bufferevent_free(p->down.from);
  delete p;
}

constexpr size_t kHighWater = 1 << 20;  // stop reading while this much waits

void Arm(Direction* d) {
  if (d->queue.empty()) return;
  auto wait =
      std::chrono::duration_cast<std::chrono::microseconds>(d->queue.front().due - Clock::now());
  if (wait.count() < 0) wait = std::chrono::microseconds(0);
  timeval tv{static_cast<time_t>(wait.count() / 1000000),
             static_cast<suseconds_t>(wait.count() % 1000000)};
  evtimer_add(d->timer, &tv);
}

void OnDue(evutil_socket_t, short, void* arg) {
  auto* d = static_cast<Direction*>(arg);
  const auto now = Clock::now();
  while (!d->queue.empty() && d->queue.front().due <= now) {
    Direction::Chunk c = d->queue.front();
    d->queue.pop_front();
    d->queued_bytes -= evbuffer_get_length(c.data);
    bufferevent_write_buffer(d->to, c.data);
    evbuffer_free(c.data);
  }
  if (d->queued_bytes < kHighWater) bufferevent_enable(d->from, EV_READ);
  if (d->queue.empty() && d->pair->closing) {
    Free(d->pair);  // the other side ended and what it sent is handed on
    return;
  }
  Arm(d);
}

void OnRead(bufferevent* bev, void* arg) {
  auto* pair = static_cast<Pair*>(arg);
  Direction* d = bev == pair->up.from ? &pair->up : &pair->down;
  evbuffer* data = evbuffer_new();
  evbuffer_add_buffer(data, bufferevent_get_input(bev));
  auto due = Clock::now() + std::chrono::milliseconds(g_options.delay_ms);
  if (std::uniform_real_distribution<double>(0, 1)(g_random) < g_options.loss)
    due += std::chrono::milliseconds(g_options.stall_ms);
  if (due < d->last_due) due = d->last_due;  // keep the order
  d->last_due = due;
  d->queued_bytes += evbuffer_get_length(data);
  const bool was_empty = d->queue.empty();
  d->queue.push_back({due, data});
  if (d->queued_bytes >= kHighWater) bufferevent_disable(bev, EV_READ);
  if (was_empty) Arm(d);
}

void OnEvent(bufferevent* bev, short what, void* arg) {
  auto* pair = static_cast<Pair*>(arg);
  if (what & BEV_EVENT_CONNECTED) {
    int one = 1;
    setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return;
  }
  if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
    if (pair->closing) return;
    pair->closing = true;
    Direction* d = bev == pair->up.from ? &pair->up : &pair->down;
    bufferevent_disable(pair->up.from, EV_READ);
    bufferevent_disable(pair->down.from, EV_READ);
    if (d->queue.empty()) {
      Free(pair);
      return;
    }
    Arm(d);  // deliver what the closed side sent, then end
  }
}

void OnAccept(evconnlistener*, evutil_socket_t fd, sockaddr*, int, void*) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  auto* pair = new Pair;
  bufferevent* client = bufferevent_socket_new(g_base, fd, BEV_OPT_CLOSE_ON_FREE);
  bufferevent* server = bufferevent_socket_new(g_base, -1, BEV_OPT_CLOSE_ON_FREE);
  pair->up = {pair, client, server, {}, {}, evtimer_new(g_base, OnDue, &pair->up), 0};
  pair->down = {pair, server, client, {}, {}, evtimer_new(g_base, OnDue, &pair->down), 0};
  for (bufferevent* b : {client, server}) {
    bufferevent_setcb(b, OnRead, nullptr, OnEvent, pair);
    bufferevent_enable(b, EV_READ | EV_WRITE);
  }
  if (bufferevent_socket_connect(server, reinterpret_cast<sockaddr*>(&g_upstream),
                                 sizeof g_upstream) != 0) {
    Free(pair);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"A delaying TCP relay: a WAN link for tests (no netem needed)", "wan_relay"};
  app.add_option("--listen", g_options.listen, "IPv4 host:port to accept on")->required();
  app.add_option("--to", g_options.to, "IPv4 host:port to relay to")->required();
  app.add_option("--delay-ms", g_options.delay_ms, "one-way delay (default 75)");
  app.add_option("--loss", g_options.loss, "share of reads stalled as if lost (default 0.01)");
  app.add_option("--stall-ms", g_options.stall_ms, "what a loss costs (default 300)");
  app.add_option("--seed", g_options.seed, "random seed (default 1)");
  CLI11_PARSE(app, argc, argv);
  sockaddr_in listen{};
  if (!ParseAddress(g_options.listen, &listen) || !ParseAddress(g_options.to, &g_upstream)) {
    std::fprintf(stderr, "wan_relay: addresses are IPv4 host:port\n");
    return 2;
  }
  g_random.seed(g_options.seed);
  signal(SIGPIPE, SIG_IGN);
  g_base = event_base_new();
  evconnlistener* listener =
      evconnlistener_new_bind(g_base, OnAccept, nullptr, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                              128, reinterpret_cast<sockaddr*>(&listen), sizeof listen);
  if (listener == nullptr) {
    std::perror("wan_relay: listen");
    return 1;
  }
  std::fprintf(stderr, "wan_relay: %s -> %s, %d ms each way, %.3f stalled by %d ms\n",
               g_options.listen.c_str(), g_options.to.c_str(), g_options.delay_ms, g_options.loss,
               g_options.stall_ms);
  event_base_dispatch(g_base);
  evconnlistener_free(listener);
  event_base_free(g_base);
  return 0;
}
