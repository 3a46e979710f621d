// asyncio's Streams API: StreamReader's reads and corner cases, its read flow control and
// StreamWriter.drain's write flow control (against a fake transport, on every loop kind), then
// open_connection / start_server over real TCP and Unix sockets with Python's asyncio at the other
// end. Loop kinds without sockets must refuse the socket helpers with NotSupportedError.
#include <cerrno>
#include <cstdlib>

#include "support.hpp"

using namespace eddy;

namespace {

// Counts what a StreamReader and StreamWriter ask of their transport.
struct FakeTransport : Transport {
  int pauses = 0, resumes = 0, closes = 0;
  bool closing = false, reading = true, eof_written = false;
  std::string written;
  void close() override {
    ++closes;
    closing = true;
  }
  bool is_closing() const override { return closing; }
  std::any get_extra_info(std::string_view name, std::any default_value) const override {
    if (name == "peername") return std::string("fake peer");
    return default_value;
  }
  void set_protocol(std::shared_ptr<BaseProtocol>) override {}
  std::shared_ptr<BaseProtocol> get_protocol() const override { return nullptr; }
  bool is_reading() const override { return reading; }
  void pause_reading() override {
    ++pauses;
    reading = false;
  }
  void resume_reading() override {
    ++resumes;
    reading = true;
  }
  using WriteTransport::write;
  void write(std::string_view data) override { written += data; }
  bool can_write_eof() const override { return true; }
  void write_eof() override { eof_written = true; }
  void abort() override { closing = true; }
  std::size_t get_write_buffer_size() const override { return 0; }
  std::pair<std::size_t, std::size_t> get_write_buffer_limits() const override { return {0, 0}; }
  void set_write_buffer_limits(std::optional<long long>, std::optional<long long>) override {}
};

std::shared_ptr<StreamReader> new_reader(EventLoop& loop, long long limit = kDefaultStreamLimit) {
  return std::make_shared<StreamReader>(limit, &loop);
}

template <class E, class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "(nothing thrown)";
}

}  // namespace

// ---- StreamReader -------------------------------------------------------------------------------

static Coro<void> plain_reads(EventLoop& loop) {
  auto r = new_reader(loop);
  r->feed_data("hello world");
  std::string zero = co_await r->read(0);
  CHECK(zero.empty());
  std::string five = co_await r->read(5);
  CHECK(five == "hello");
  CHECK(r->buffer_size() == 6);
  std::string more = co_await r->read(100);  // at most what is there
  CHECK(more == " world");
  // read(n) waits for data; read(-1) for EOF.
  loop.call_soon([r] { r->feed_data("late"); });
  std::string late = co_await r->read(10);
  CHECK(late == "late");
  // Small reads are copied out of a buffer that is kept, larger ones take the buffer: either way
  // the next read sees only what came after.
  const std::string big(5000, 'q');
  r->feed_data(big);
  std::string got_big = co_await r->read(10000);
  CHECK(got_big == big);
  r->feed_data("xy");
  std::string small = co_await r->read(10000);
  CHECK(small == "xy");
  r->feed_data(big);
  r->feed_data("z");
  std::string got_more = co_await r->read(10000);
  CHECK(got_more == big + "z");
  loop.call_soon([r] { r->feed_data("a"); });
  loop.call_soon([r] { r->feed_data("b"); });
  loop.call_soon([r] { r->feed_eof(); });
  CHECK_FALSE(r->at_eof());
  std::string all = co_await r->read();
  CHECK(all == "ab");
  CHECK(r->at_eof());
  std::string after = co_await r->read();  // a closed stream reads as ""
  CHECK(after.empty());
  std::string after_n = co_await r->read(10);
  CHECK(after_n.empty());
  CHECK_THROWS_AS(r->feed_data("x"), RuntimeError);
}

LOOP_TEST("StreamReader: read(n), read(0), read(-1) and at_eof", "[streams-api]") {
  this->loop->run_until_complete(plain_reads(*this->loop));
}

static Coro<void> big_read_all(EventLoop& loop) {
  // read(-1) collects more than the limit without the transport staying paused.
  auto r = new_reader(loop, 1000);
  Ref<FakeTransport> t(new FakeTransport);
  r->set_transport(Ref<ReadTransport>(t));
  const std::string payload(10000, 'z');
  r->feed_data(payload);
  CHECK(t->pauses == 1);
  loop.call_soon([r] { r->feed_eof(); });
  std::string all = co_await r->read(-1);
  CHECK(all == payload);
  CHECK(t->resumes == 1);
}

LOOP_TEST("StreamReader: read(-1) returns more than the limit", "[streams-api][flow]") {
  this->loop->run_until_complete(big_read_all(*this->loop));
}

static Coro<void> exact_reads(EventLoop& loop) {
  auto r = new_reader(loop);
  r->feed_data("abc");
  loop.call_soon([r] { r->feed_data("def"); });
  loop.call_soon([r] { r->feed_data("gh"); });
  std::string six = co_await r->readexactly(6);  // across chunks
  CHECK(six == "abcdef");
  std::string none = co_await r->readexactly(0);
  CHECK(none.empty());
  try {
    co_await r->readexactly(-1);
    FAIL("readexactly(-1)");
  } catch (const ValueError& e) {
    CHECK(std::string(e.what()) == "readexactly size can not be less than zero");
  }
  loop.call_soon([r] { r->feed_eof(); });
  try {
    co_await r->readexactly(10);
    FAIL("readexactly past EOF");
  } catch (const IncompleteReadError& e) {
    CHECK(e.partial == "gh");
    CHECK(e.expected == 10u);
    CHECK(std::string(e.what()) == "2 bytes read on a total of 10 expected bytes");
  }
  CHECK(r->buffer_size() == 0);  // the partial data went into the exception
  CHECK(r->at_eof());
  try {
    co_await r->readexactly(1);
    FAIL("readexactly at EOF");
  } catch (const EOFError& e) {  // IncompleteReadError is an EOFError
    CHECK(std::string(e.what()) == "0 bytes read on a total of 1 expected bytes");
  }
}

LOOP_TEST("StreamReader: readexactly, partial data at EOF, bad sizes", "[streams-api]") {
  this->loop->run_until_complete(exact_reads(*this->loop));
}

static Coro<void> line_reads(EventLoop& loop) {
  auto r = new_reader(loop);
  r->feed_data("one\ntw");
  loop.call_soon([r] { r->feed_data("o\nthr"); });
  std::string one = co_await r->readline();
  std::string two = co_await r->readline();
  CHECK(one == "one\n");
  CHECK(two == "two\n");
  loop.call_soon([r] { r->feed_eof(); });
  std::string partial = co_await r->readline();  // the last line has no newline
  CHECK(partial == "thr");
  std::string end = co_await r->readline();
  CHECK(end.empty());

  // Over the limit, newline found: that line is dropped, the rest stays.
  auto small = new_reader(loop, 4);
  small->feed_data("abcdefgh\nxy\n");
  try {
    co_await small->readline();
    FAIL("readline over the limit");
  } catch (const ValueError& e) {
    CHECK(std::string(e.what()) == "Separator is found, but chunk is longer than limit");
  }
  std::string xy = co_await small->readline();
  CHECK(xy == "xy\n");
  // Over the limit, no newline: the whole buffer is dropped.
  small->feed_data("abcdefghij");
  try {
    co_await small->readline();
    FAIL("readline over the limit");
  } catch (const ValueError& e) {
    CHECK(std::string(e.what()) == "Separator is not found, and chunk exceed the limit");
  }
  CHECK(small->buffer_size() == 0);
}

LOOP_TEST("StreamReader: readline, partial last line, over-limit lines", "[streams-api]") {
  this->loop->run_until_complete(line_reads(*this->loop));
}

// Lines already buffered are taken at the co_await, without a frame, by readuntil's rules: a
// newline at the limit is accepted and one past it is not. Given to a task, readline runs as a
// coroutine and takes the same line.
static Coro<void> buffered_lines(EventLoop& loop) {
  auto r = new_reader(loop, 4);
  r->feed_data("abcd\nabcde\nx\n");
  std::string at_limit = co_await r->readline();
  CHECK(at_limit == "abcd\n");
  try {
    co_await r->readline();
    FAIL("a newline past the limit");
  } catch (const ValueError& e) {
    CHECK(std::string(e.what()) == "Separator is found, but chunk is longer than limit");
  }
  Task<std::string> task = loop.create_task(r->readline());
  std::string x = co_await task;
  CHECK(x == "x\n");
  CHECK(r->buffer_size() == 0);
  // Many lines in one chunk come out one by one, in order, the rest staying buffered.
  std::string many;
  for (int i = 0; i < 50; ++i) many += std::to_string(i % 10) + "\n";
  r->feed_data(many + "tail");
  std::string got;
  for (int i = 0; i < 50; ++i) {
    std::string line = co_await r->readline();
    got += line;
  }
  CHECK(got == many);
  CHECK(r->buffer_size() == 4);
}

// `async for line in reader`: readline until it gives "" at EOF, the partial last line included;
// waits for data in between; readline's errors come out of next().
static Coro<std::vector<std::string>> lines_of(EventLoop& loop) {
  auto r = new_reader(loop, 8);
  r->feed_data("a\nbb\n");
  loop.call_later(0.01, [r] { r->feed_data("c\nd"); });
  loop.call_later(0.02, [r] { r->feed_eof(); });
  std::vector<std::string> got;
  while (auto line = co_await r->next()) got.push_back(*line);
  std::optional<std::string> after = co_await r->next();
  got.push_back(after ? "more" : "end");
  auto small = new_reader(loop, 4);
  small->feed_data("abcdefgh\n");
  try {
    co_await small->next();
    got.push_back("no error");
  } catch (const ValueError& e) {
    got.push_back(e.what());
  }
  co_return got;
}

LOOP_TEST("StreamReader: next() iterates lines as `async for line in reader`", "[streams-api]") {
  CHECK(this->loop->run_until_complete(lines_of(*this->loop)) ==
        std::vector<std::string>{"a\n", "bb\n", "c\n", "d", "end",
                                 "Separator is found, but chunk is longer than limit"});
}

LOOP_TEST("StreamReader: buffered lines are taken at once, by readuntil's rules", "[streams-api]") {
  this->loop->run_until_complete(buffered_lines(*this->loop));
}

static Coro<void> until_reads(EventLoop& loop) {
  auto r = new_reader(loop, 4);
  r->feed_data("ab|cd");
  std::string ab = co_await r->readuntil("|");
  CHECK(ab == "ab|");
  // Found beyond the limit: LimitOverrunError, nothing consumed.
  r->feed_data("efgh|");  // buffer "cdefgh|", separator at 6 > 4
  try {
    co_await r->readuntil("|");
    FAIL("readuntil over the limit");
  } catch (const LimitOverrunError& e) {
    CHECK(e.consumed == 6u);
    CHECK(std::string(e.what()) == "Separator is found, but chunk is longer than limit");
  }
  CHECK(r->buffer_size() == 7);
  std::string kept = co_await r->readexactly(7);
  CHECK(kept == "cdefgh|");
  // Not found, over the limit: consumed is what can be skipped (all but max_seplen - 1 bytes).
  r->feed_data("abcdefg");
  try {
    co_await r->readuntil("XYZ");
    FAIL("readuntil over the limit");
  } catch (const LimitOverrunError& e) {
    CHECK(e.consumed == 5u);
    CHECK(std::string(e.what()) == "Separator is not found, and chunk exceed the limit");
  }
  CHECK(r->buffer_size() == 7);
  std::string skipped = co_await r->readexactly(5);  // skip what cannot hold a separator
  CHECK(skipped == "abcde");
  // EOF before the separator: IncompleteReadError with everything, expected undefined.
  loop.call_soon([r] { r->feed_eof(); });
  try {
    co_await r->readuntil("XYZ");
    FAIL("readuntil past EOF");
  } catch (const IncompleteReadError& e) {
    CHECK(e.partial == "fg");
    CHECK_FALSE(e.expected.has_value());
    CHECK(std::string(e.what()) == "2 bytes read on a total of undefined expected bytes");
  }
  CHECK(r->buffer_size() == 0);
  try {
    co_await r->readuntil("");
    FAIL("empty separator");
  } catch (const ValueError& e) {
    CHECK(std::string(e.what()) == "Separator should be at least one-byte string");
  }
  try {
    co_await r->readuntil(std::vector<std::string>());
    FAIL("no separators");
  } catch (const ValueError& e) {
    CHECK(std::string(e.what()) == "Separator should contain at least one element");
  }

  // The separator split across chunks, completed by the chunk that comes with EOF.
  auto r2 = new_reader(loop);
  r2->feed_data("head-S");
  loop.call_soon([r2] {
    r2->feed_data("EP-tail");
    r2->feed_eof();
  });
  std::string head = co_await r2->readuntil("-SEP-");
  CHECK(head == "head-SEP-");
  std::string tail = co_await r2->read();
  CHECK(tail == "tail");
}

LOOP_TEST("StreamReader: readuntil, LimitOverrunError keeps the data, IncompleteReadError",
          "[streams-api]") {
  this->loop->run_until_complete(until_reads(*this->loop));
}

// Separators of up to 7 bytes found in the buffer are taken at the co_await, without a frame; any
// byte may be in them (NUL, 0xff). A 7-byte and an 8-byte separator (the coroutine) agree, a
// separator that starts exactly at the limit is accepted, and one past it raises.
static Coro<void> buffered_separators(EventLoop& loop) {
  auto r = new_reader(loop, 10);
  const std::string odd("a\0\xff\0b", 5);
  r->feed_data(odd + "|1234567|1234567|");
  std::string first = co_await r->readuntil(std::string_view("\0b", 2));
  CHECK(first == odd);
  std::string seven = co_await r->readuntil("1234567");
  CHECK(seven == "|1234567");
  std::string eight = co_await r->readuntil("|1234567");  // 8 bytes: the coroutine
  CHECK(eight == "|1234567");
  CHECK(r->buffer_size() == 1);
  r->feed_data("012345678x");
  std::string at_limit = co_await r->readuntil("x");  // at index 10, the limit
  CHECK(at_limit == "|012345678x");
  r->feed_data("0123456789Zx");
  try {
    co_await r->readuntil("x");
    FAIL("a separator past the limit");
  } catch (const LimitOverrunError& e) {
    CHECK(e.consumed == 11u);
  }
  CHECK(r->buffer_size() == 12);
  Task<std::string> task = loop.create_task(r->readuntil("Zx"));
  std::string rest = co_await task;
  CHECK(rest == "0123456789Zx");
  CHECK(r->buffer_size() == 0);
}

LOOP_TEST("StreamReader: short separators found in the buffer are taken at once", "[streams-api]") {
  this->loop->run_until_complete(buffered_separators(*this->loop));
}

static Coro<void> several_separators(EventLoop& loop) {
  auto r = new_reader(loop);
  r->feed_data("xxEND--STOPa\r\nb\n");
  std::string first = co_await r->readuntil(strings("STOP", "--"));  // ends first
  CHECK(first == "xxEND--");
  std::string second = co_await r->readuntil(strings("STOP", "--"));
  CHECK(second == "STOP");
  std::string crlf = co_await r->readuntil(strings("\r\n", "\n"));
  CHECK(crlf == "a\r\n");
  std::string lf = co_await r->readuntil(strings("\r\n", "\n"));
  CHECK(lf == "b\n");
  // Matches ending at the same place: the shortest separator counts for the limit, as asyncio.
  auto small = new_reader(loop, 1);
  small->feed_data("aab");
  try {
    co_await small->readuntil(strings("ab", "b"));
    FAIL("over the limit");
  } catch (const LimitOverrunError& e) {
    CHECK(e.consumed == 2u);
  }
}

LOOP_TEST("StreamReader: readuntil with several separators, shortest result wins",
          "[streams-api]") {
  this->loop->run_until_complete(several_separators(*this->loop));
}

static Coro<void> reader_exceptions(EventLoop& loop) {
  auto r = new_reader(loop);
  r->feed_data("buffered");
  CHECK_FALSE(r->exception());
  r->set_exception(std::system_error(std::make_error_code(std::errc::connection_reset), "lost"));
  REQUIRE(r->exception());
  // Every read raises it, buffered data or not (readexactly checks its argument first).
  for (int i = 0; i < 5; ++i) {
    try {
      if (i == 0) co_await r->read(3);
      if (i == 1) co_await r->read();
      if (i == 2) co_await r->readexactly(2);
      if (i == 3) co_await r->readline();
      if (i == 4) co_await r->readuntil("x");
      FAIL("read after set_exception");
    } catch (const std::system_error& e) {
      CHECK(e.code() == std::errc::connection_reset);
    }
  }
  CHECK_THROWS_AS(co_await r->readexactly(-1), ValueError);

  // A read that is waiting raises at once.
  auto w = new_reader(loop);
  loop.call_soon([w] { w->set_exception(ValueError("broken stream")); });
  try {
    co_await w->read(1);
    FAIL("waiting read");
  } catch (const ValueError& e) {
    CHECK(std::string(e.what()) == "broken stream");
  }
}

LOOP_TEST("StreamReader: set_exception makes every read raise", "[streams-api][faults]") {
  this->loop->run_until_complete(reader_exceptions(*this->loop));
}

// asyncio's readline catches IncompleteReadError and LimitOverrunError from readuntil, whoever
// raised them, so a stored one is handled as readline handles its own (python3.13: "readline ->
// b'part'", and "ValueError x" with the buffer left empty). Awaited inline and as a task alike.
static Coro<std::string> read_line(EventLoop& loop, StreamReader& r, bool as_task) {
  if (!as_task) return r.readline();
  return [](Task<std::string> t) -> Coro<std::string> {
    std::string line = co_await t;
    co_return line;
  }(loop.create_task(r.readline()));
}

static Coro<void> readline_stored_errors(EventLoop& loop, bool as_task) {
  auto r = new_reader(loop);
  r->feed_data("abc\n");
  r->set_exception(IncompleteReadError("part", std::nullopt));
  const std::string line = co_await read_line(loop, *r, as_task);
  CHECK(line == "part");

  auto r2 = new_reader(loop);
  r2->feed_data("abc\ndef");
  r2->set_exception(LimitOverrunError("x", 1));
  std::string raised;
  try {
    co_await read_line(loop, *r2, as_task);
  } catch (const ValueError& e) {
    raised = e.what();
  }
  CHECK(raised == "x");
  CHECK(r2->buffer_size() == 0);
}

LOOP_TEST("StreamReader: readline handles a stored IncompleteReadError or LimitOverrunError",
          "[streams-api][faults]") {
  this->loop->run_until_complete(readline_stored_errors(*this->loop, false));
  this->loop->run_until_complete(readline_stored_errors(*this->loop, true));
}

static Coro<void> two_readers(EventLoop& loop) {
  auto r = new_reader(loop);
  Task<std::string> first = loop.create_task(r->read(10));
  co_await sleep(0);
  try {
    co_await r->readline();
    FAIL("a second reader");
  } catch (const RuntimeError& e) {
    CHECK(std::string(e.what()) ==
          "readuntil() called while another coroutine is already waiting for incoming data");
  }
  // Cancelling the waiting read leaves the reader usable.
  first.cancel();
  try {
    co_await first;
    FAIL("cancelled read");
  } catch (const CancelledError&) {
  }
  r->feed_data("x");
  std::string x = co_await r->read(10);
  CHECK(x == "x");
}

LOOP_TEST("StreamReader: one waiting reader at a time; a cancelled read leaves it usable",
          "[streams-api][faults]") {
  this->loop->run_until_complete(two_readers(*this->loop));
}

// Reads awaited inline that wait reuse the reader's last waiter future when nothing else holds
// it; a waiter that was cancelled is not reused, and the reader stays usable.
static Coro<std::string> read_ten(std::shared_ptr<StreamReader> r) {
  std::string s = co_await r->read(10);
  co_return s;
}

static Coro<void> reused_waiters(EventLoop& loop) {
  auto r = new_reader(loop);
  loop.call_soon([r] { r->feed_data("a"); });
  std::string first = co_await r->read(10);
  CHECK(first == "a");
  const std::uint64_t made = loop.stats().futures_created;
  for (int i = 0; i < 3; ++i) {
    loop.call_soon([r] { r->feed_data("b"); });
    std::string b = co_await r->read(10);
    CHECK(b == "b");
  }
  CHECK(loop.stats().futures_created == made);  // three waits, no new future

  Task<std::string> cancelled = loop.create_task(read_ten(r));
  co_await sleep(0);
  CHECK(cancelled.cancel());
  try {
    co_await cancelled;
    FAIL("cancelled read");
  } catch (const CancelledError&) {
  }
  const std::uint64_t after_cancel = loop.stats().futures_created;
  loop.call_soon([r] { r->feed_data("c"); });
  std::string c = co_await r->read(10);
  CHECK(c == "c");
  CHECK(loop.stats().futures_created == after_cancel + 1);  // a new waiter

  // An error set while a read waits reaches that read, and every later one.
  Task<std::string> failing = loop.create_task(read_ten(r));
  co_await sleep(0);
  r->set_exception(std::make_exception_ptr(ValueError("boom")));
  CHECK_THROWS_AS(co_await failing, ValueError);
  CHECK_THROWS_AS(co_await r->read(10), ValueError);
}

LOOP_TEST("StreamReader: reads that wait reuse one waiter future", "[streams-api]") {
  this->loop->run_until_complete(reused_waiters(*this->loop));
}

static Coro<void> reader_without_loop_argument() {
  // Inside a task the running loop is the default.
  auto r = std::make_shared<StreamReader>();
  CHECK(r->limit() == 65536);
  get_running_loop().call_soon([r] { r->feed_data("ok"); });
  std::string s = co_await r->read(2);
  CHECK(s == "ok");
}

LOOP_TEST("StreamReader: limit validation, the default loop and limit", "[streams-api][faults]") {
  CHECK(message_of<ValueError>([&] { StreamReader r(0, this->loop.get()); }) ==
        "Limit cannot be <= 0");
  CHECK_THROWS_AS(StreamReader(-5, this->loop.get()), ValueError);
  this->loop->run_until_complete(reader_without_loop_argument());
}

// ---- Read flow control --------------------------------------------------------------------------

static Coro<void> read_flow(EventLoop& loop) {
  auto r = new_reader(loop, 10);
  Ref<FakeTransport> t(new FakeTransport);
  r->set_transport(Ref<ReadTransport>(t));
  CHECK_THROWS_AS(r->set_transport(Ref<ReadTransport>(t)), RuntimeError);
  r->feed_data(std::string(20, 'a'));  // 20 is not over 2 * limit
  CHECK(t->pauses == 0);
  r->feed_data("b");  // 21 > 20: paused
  CHECK(t->pauses == 1);
  r->feed_data(std::string(5, 'c'));  // once only
  CHECK(t->pauses == 1);
  std::string s = co_await r->read(10);  // 16 left: still over the limit
  CHECK(t->resumes == 0);
  s = co_await r->read(6);  // 10 left: back at the limit, resumed
  CHECK(t->resumes == 1);
  r->feed_data(std::string(11, 'd'));  // 21 again
  CHECK(t->pauses == 2);
  // Waiting for more than is buffered resumes the transport (else it would never come).
  loop.call_soon([r, t] {
    CHECK(t->resumes == 2);
    r->feed_data(std::string(9, 'e'));
  });
  std::string thirty = co_await r->readexactly(30);
  CHECK(thirty.size() == 30);
  CHECK(t->pauses == 3);  // the 30 bytes were over 2 * limit until read
  CHECK(t->resumes == 3);
  CHECK(t->reading);
}

LOOP_TEST("StreamReader: pauses its transport over 2 * limit, resumes at <= limit",
          "[streams-api][flow]") {
  this->loop->run_until_complete(read_flow(*this->loop));
}

// read() and readexactly() awaited inline take buffered data, or make read's one wait, without a
// coroutine frame of their own; they stay lazy, keep their reader alive and cannot be awaited
// twice, like any coroutine.
static std::uint32_t inline_read_line = 0;
static Coro<std::string> read_inline(std::shared_ptr<StreamReader> r) {
  inline_read_line = __LINE__ + 1;
  std::string s = co_await r->read(10);
  co_return s;
}

// (No co_await inside CHECK: gcc 12 also evaluates the copy of the expression in the macro's
// never-taken `while (false && ...)`.)
static Coro<void> inline_reads(EventLoop& loop) {
  auto r = new_reader(loop);
  // The wait is the awaiting coroutine's own (read has no frame): the await chain names the
  // call at the caller's co_await, then the future it waits for.
  Task<std::string> waiting = loop.create_task(read_inline(r));
  co_await sleep(0);
  auto chain = waiting.await_chain();
  REQUIRE(chain.size() == 2);
  CHECK(chain[0].function == std::string("read_inline"));
  CHECK(chain[0].awaiting == "eddy::StreamReader::read");
  CHECK(chain[0].where.line == inline_read_line);
  CHECK(chain[1].function == std::string("eddy::StreamReader::read"));
  CHECK(std::string(chain[1].where.file).ends_with("streams.cpp"));
  CHECK(chain[1].awaiting == "<Future pending>");
  r->feed_data("hi");
  std::string hi = co_await waiting;
  CHECK(hi == "hi");

  // Cancelled while waiting inline: CancelledError in the task, the reader usable again.
  Task<std::string> cancelled = loop.create_task(read_inline(r));
  co_await sleep(0);
  cancelled.cancel();
  try {
    co_await cancelled;
    FAIL("cancelled inline read");
  } catch (const CancelledError&) {
  }
  r->feed_data("again");
  std::string aga = co_await r->read(3);
  CHECK(aga == "aga");

  // Lazy: each read takes its data when awaited, not when called.
  auto first = r->read(1);
  auto second = r->read(1);
  std::string i = co_await second;
  std::string n = co_await first;
  CHECK(i == "i");
  CHECK(n == "n");
  CHECK_THROWS_AS(co_await first, RuntimeError);  // awaited twice

  // readexactly with the bytes already there.
  r->feed_data("0123456789");
  std::string exactly = co_await r->readexactly(4);
  CHECK(exactly == "0123");
  CHECK_THROWS_AS(co_await r->readexactly(-1), ValueError);

  // A read not yet awaited keeps its reader alive (the tasks above still hold `r`).
  auto kept = new_reader(loop);
  kept->feed_data("456789");
  std::weak_ptr<StreamReader> weak = kept;
  auto pending = kept->read(100);
  kept.reset();
  CHECK_FALSE(weak.expired());
  std::string rest = co_await pending;
  CHECK(rest == "456789");
  pending = Coro<std::string>();
  CHECK(weak.expired());

  // A reader not owned by a shared_ptr works too.
  StreamReader plain(kDefaultStreamLimit, &loop);
  plain.feed_data("abc");
  std::string ab = co_await plain.read(2);
  CHECK(ab == "ab");
  Task<std::string> as_task = loop.create_task(plain.read(5));
  std::string c = co_await as_task;
  CHECK(c == "c");
}

LOOP_TEST("StreamReader: reads awaited inline wait in the caller's frame, lazily",
          "[streams-api]") {
  this->loop->run_until_complete(inline_reads(*this->loop));
}

// ---- StreamWriter and drain ---------------------------------------------------------------------

namespace {
struct FakeConnection {
  Ref<FakeTransport> transport;
  std::shared_ptr<StreamReader> reader;
  std::shared_ptr<StreamReaderProtocol> protocol;
  std::shared_ptr<StreamWriter> writer;
};

FakeConnection fake_connection(EventLoop& loop) {
  FakeConnection c;
  c.transport = Ref<FakeTransport>(new FakeTransport);
  c.reader = std::make_shared<StreamReader>(kDefaultStreamLimit, &loop);
  c.protocol = std::make_shared<StreamReaderProtocol>(c.reader, nullptr, &loop);
  c.protocol->connection_made(Ref<Transport>(c.transport));
  c.writer =
      std::make_shared<StreamWriter>(Ref<WriteTransport>(c.transport), c.protocol, c.reader, loop);
  return c;
}
}  // namespace

static Coro<void> drain_flow(EventLoop& loop) {
  FakeConnection c = fake_connection(loop);
  c.writer->write("abc");
  c.writer->writelines(strings("d", "ef"));
  CHECK(c.transport->written == "abcdef");
  CHECK(c.writer->can_write_eof());
  c.writer->write_eof();
  CHECK(c.transport->eof_written);
  CHECK(std::any_cast<std::string>(c.writer->get_extra_info("peername")) == "fake peer");
  CHECK(std::any_cast<int>(c.writer->get_extra_info("nothing", 3)) == 3);
  CHECK(c.writer->transport().get() == static_cast<WriteTransport*>(c.transport.get()));

  co_await c.writer->drain();  // not paused: at once
  // Over the high-water mark: drain waits for resume_writing.
  c.protocol->pause_writing();
  Task<void> draining = loop.create_task(c.writer->drain());
  for (int i = 0; i < 5; ++i) co_await sleep(0);
  CHECK_FALSE(draining.done());
  c.protocol->resume_writing();
  co_await draining;
  // The same, awaited inline by a coroutine (the wait then needs drain's coroutine).
  c.protocol->pause_writing();
  auto drain_inline = [](std::shared_ptr<StreamWriter> w) -> Coro<void> { co_await w->drain(); };
  Task<void> inline_drain = loop.create_task(drain_inline(c.writer));
  for (int i = 0; i < 5; ++i) co_await sleep(0);
  CHECK_FALSE(inline_drain.done());
  c.protocol->resume_writing();
  co_await inline_drain;

  // Paused, then the connection is lost with an error: drain raises it.
  c.protocol->pause_writing();
  Task<void> lost = loop.create_task(c.writer->drain());
  co_await sleep(0);
  c.protocol->connection_lost(std::make_exception_ptr(
      std::system_error(std::make_error_code(std::errc::connection_reset))));
  try {
    co_await lost;
    FAIL("drain after connection_lost(exc)");
  } catch (const std::system_error& e) {
    CHECK(e.code() == std::errc::connection_reset);
  }
  // The reader has the error too, and later drains raise it first.
  CHECK(c.reader->exception());
  CHECK_THROWS_AS(co_await c.writer->drain(), std::system_error);
  try {
    co_await c.writer->wait_closed();
    FAIL("wait_closed after connection_lost(exc)");
  } catch (const std::system_error& e) {
    CHECK(e.code() == std::errc::connection_reset);
  }
}

LOOP_TEST("StreamWriter: write, writelines, drain blocks while paused, raises after loss",
          "[streams-api][flow]") {
  this->loop->run_until_complete(drain_flow(*this->loop));
}

static Coro<void> drain_after_close(EventLoop& loop) {
  FakeConnection c = fake_connection(loop);
  CHECK_FALSE(c.writer->is_closing());
  Task<void> closed = loop.create_task(c.writer->wait_closed());
  co_await sleep(0);
  CHECK_FALSE(closed.done());
  c.writer->close();
  CHECK(c.writer->is_closing());
  CHECK(c.transport->closes == 1);
  // A transport reports connection_lost from a later callback. drain yields once first, so it
  // sees the loss: ConnectionResetError('Connection lost').
  auto protocol = c.protocol;
  loop.call_soon([protocol] { protocol->connection_lost(nullptr); });
  try {
    co_await c.writer->drain();
    FAIL("drain after close");
  } catch (const std::system_error& e) {
    CHECK(e.code() == std::errc::connection_reset);
    CHECK(std::string(e.what()) == "Connection lost");  // str() of it in Python
  }
  co_await closed;  // a clean close: no error
  co_await c.writer->wait_closed();
  std::string eof = co_await c.reader->read();
  CHECK(eof.empty());
  CHECK(c.reader->at_eof());
}

LOOP_TEST("StreamWriter: drain after close sees the loss; wait_closed", "[streams-api][flow]") {
  this->loop->run_until_complete(drain_after_close(*this->loop));
}

LOOP_TEST("StreamWriter: dropping an open writer closes its transport", "[streams-api]") {
  FakeConnection c = fake_connection(*this->loop);
  Ref<FakeTransport> t = c.transport;
  c.writer.reset();
  CHECK(t->closes == 1);
  c.protocol->connection_lost(nullptr);
  // Already closing: nothing more.
  auto w = std::make_shared<StreamWriter>(Ref<WriteTransport>(t), c.protocol, nullptr, *this->loop);
  w.reset();
  CHECK(t->closes == 1);
}

LOOP_TEST("StreamReaderProtocol: data, EOF keeps the connection half-open", "[streams-api]") {
  FakeConnection c = fake_connection(*this->loop);
  c.protocol->data_received("abc");
  CHECK(c.reader->buffer_size() == 3);
  CHECK(c.protocol->eof_received());  // half-open: we may still write
  CHECK_FALSE(c.reader->at_eof());
  CHECK_FALSE(c.protocol->server_side());
  c.protocol->connection_lost(nullptr);
  CHECK(c.protocol->reader() == nullptr);  // dropped at connection_lost
}

// ---- Sockets ------------------------------------------------------------------------------------

// Where the loop has sockets but no TLS (the virtual network), the stream helpers work and TLS
// is refused with NotSupportedError naming start_tls, leaving the plain connection usable.
static Coro<void> tls_refused(EventLoop& loop) {
  ClientConnectedCallback echo = [](std::shared_ptr<StreamReader> r,
                                    std::shared_ptr<StreamWriter> w) -> Coro<void> {
    std::string line = co_await r->readline();
    w->write(line);
    co_await w->drain();
    w->close();
  };
  Ref<Server> server = co_await start_server(echo, "127.0.0.1", 0);
  StreamPair pair = co_await open_connection("127.0.0.1", server->sockets()[0].address.port);
  auto [reader, writer] = pair;
  static const TlsContext tls{};
  std::string refused;
  try {
    co_await writer->start_tls(&tls, {.server_hostname = "localhost"});
  } catch (const NotSupportedError& e) {
    refused = e.method();
  }
  CHECK(refused == "start_tls");
  writer->write("still plain\n");
  std::string back = co_await reader->readline();
  CHECK(back == "still plain\n");
  writer->close();
  co_await writer->wait_closed();
  server->close();
  co_await server->wait_closed();
}

LOOP_TEST("open_connection without TLS on the target: start_tls is NotSupportedError",
          "[streams-api]") {
  if (this->loop->capabilities().supports("start_tls"))
    SKIP("this loop has TLS (tested against openssl)");
  this->loop->run_until_complete(tls_refused(*this->loop));
}

// Connects to `server`, reads until EOF, then closes the connection and the server.
static Coro<std::string> read_all_then_close(Ref<Server> server) {
  StreamPair pair = co_await open_connection("127.0.0.1", server->sockets()[0].address.port);
  std::shared_ptr<StreamReader> reader = pair.first;
  std::shared_ptr<StreamWriter> writer = pair.second;
  Coro<std::string> everything = reader->read(-1);
  std::string got = co_await wait_for(std::move(everything), 5.0);
  writer->close();
  co_await writer->wait_closed();
  server->close();
  Coro<void> closed = server->wait_closed();
  co_await wait_for(std::move(closed), 5.0);
  co_return got;
}

// As asyncio 3.12+: the server keeps no reference to a connection's writer. A handler that
// returns without closing it drops the last one, which closes the transport: the client reads
// what was written, then EOF, and the server's wait_closed() ends.
static Coro<void> handler_drops_writer(EventLoop& loop, std::string* got) {
  ClientConnectedCallback hello = [](std::shared_ptr<StreamReader>,
                                     std::shared_ptr<StreamWriter> w) -> Coro<void> {
    w->write("hi");
    co_await w->drain();
  };
  Ref<Server> server = co_await start_server(hello, "127.0.0.1", 0);
  *got = co_await read_all_then_close(server);
}

LOOP_TEST("start_server: a handler that drops its writer closes the connection", "[streams-api]") {
  if (!this->loop->capabilities().supports("create_server")) SKIP("no sockets on this loop");
  std::string got;
  this->loop->run_until_complete(handler_drops_writer(*this->loop, &got));
  CHECK(got == "hi");
}

// The same while someone holds the handler's task (a6.py in the commit message, python3.13: the
// client reads b'bye' and EOF): Python frees a coroutine's locals when it returns, whoever keeps
// the task; a finished void task lets its frame, and so the writer it was given, go.
static Coro<void> handler_task_kept(std::vector<Task<void>>* kept, std::string* got) {
  ClientConnectedCallback bye = [kept](std::shared_ptr<StreamReader>,
                                       std::shared_ptr<StreamWriter> w) -> Coro<void> {
    kept->push_back(Task<void>(Ref<TaskBase>(current_task())));
    w->write("bye");
    co_return;
  };
  Ref<Server> server = co_await start_server(bye, "127.0.0.1", 0);
  *got = co_await read_all_then_close(server);
}

LOOP_TEST("start_server: a handler whose task is kept still lets its writer go", "[streams-api]") {
  if (!this->loop->capabilities().supports("create_server")) SKIP("no sockets on this loop");
  std::vector<Task<void>> kept;
  std::string got;
  this->loop->run_until_complete(handler_task_kept(&kept, &got));
  CHECK(got == "bye");
  REQUIRE(kept.size() == 1);
  CHECK(kept[0].done());
}

// The per-connection task is shown (inspector, task repr) as created at the start_server call,
// where the handler became a ClientConnectedCallback: not at a line inside Eddy.
static Coro<void> handler_task_place(std::string* place, std::uint32_t* line) {
  auto handler = [place](std::shared_ptr<StreamReader>,
                         std::shared_ptr<StreamWriter> w) -> Coro<void> {
    const SourceLocation at = current_task()->created_at();
    const std::string file = at.file;
    *place = file.substr(file.find_last_of('/') + 1) + ":" + std::to_string(at.line);
    w->close();
    co_return;
  };
  *line = __LINE__ + 1;
  Ref<Server> server = co_await start_server(handler, "127.0.0.1", 0);
  co_await read_all_then_close(server);  // EOF: the handler ran and closed
}

LOOP_TEST("start_server: the handler's task is created at the start_server call", "[streams-api]") {
  if (!this->loop->capabilities().supports("create_server")) SKIP("no sockets on this loop");
  std::string place;
  std::uint32_t line = 0;
  this->loop->run_until_complete(handler_task_place(&place, &line));
  CHECK(place == "test_stream_api.cpp:" + std::to_string(line));
}

#ifndef __EMSCRIPTEN__
#include <unistd.h>

#include "peer.hpp"
#include "tls_certs.hpp"

using NativeFixture = LoopFixture<PlatformLoop>;

static std::uint16_t port_of(const std::string& ready) {
  return static_cast<std::uint16_t>(std::stoi(ready));
}

static std::string socket_path(const char* tag) {
  return "/tmp/eddy-stream-api-" + std::to_string(::getpid()) + "-" + tag + ".sock";
}

static Coro<void> echo_conversation(bool unix_socket, std::string where) {
  StreamPair s;
  if (unix_socket)
    s = co_await open_unix_connection(where, {.limit = 1000});
  else
    s = co_await open_connection("127.0.0.1", port_of(where), {.limit = 1000});
  std::shared_ptr<StreamReader> reader = s.first;
  std::shared_ptr<StreamWriter> writer = s.second;
  CHECK(reader->limit() == 1000);
  if (!unix_socket) {
    auto peer = std::any_cast<SocketAddress>(writer->get_extra_info("peername"));
    CHECK(peer.port == port_of(where));
  }
  writer->write("line one\nline two\r\nrest");
  writer->writelines(strings("ab", "cd"));
  co_await writer->drain();
  std::string one = co_await reader->readline();
  CHECK(one == "line one\n");
  std::string two = co_await reader->readuntil("\r\n");
  CHECK(two == "line two\r\n");
  std::string rest = co_await reader->readexactly(4);
  CHECK(rest == "rest");
  // A payload over 2 * limit: the reader pauses and resumes the socket on the way.
  const std::string big = peer_pattern(0, 100000);
  writer->write(big);
  co_await writer->drain();
  std::string echoed = co_await reader->readexactly(4 + 100000);
  CHECK(echoed == "abcd" + big);
  CHECK(writer->can_write_eof());
  writer->write_eof();  // the echo server closes after our EOF
  std::string tail = co_await reader->read();
  CHECK(tail.empty());
  CHECK(reader->at_eof());
  writer->close();
  co_await writer->wait_closed();
  CHECK(writer->is_closing());
}

TEST_CASE_METHOD(NativeFixture, "open_connection: a conversation with an asyncio echo server",
                 "[streams-api][peer]") {
  const bool unix_socket = GENERATE(false, true);
  PythonPeer peer({"echo-server", unix_socket ? "unix:" + socket_path("echo") : "tcp:127.0.0.1:0"});
  const std::string where = peer.ready();
  loop->run_until_complete(echo_conversation(unix_socket, where));
  peer.finish();
}

static Coro<void> partial_at_eof(std::uint16_t port) {
  auto [reader, writer] = co_await open_connection("127.0.0.1", port);
  writer->write("12345");
  writer->write_eof();  // the server answers once it saw our EOF, then closes
  try {
    co_await reader->readexactly(100);
    FAIL("readexactly past EOF");
  } catch (const IncompleteReadError& e) {
    CHECK(e.partial == "after-eof:5");
    CHECK(e.expected == 100u);
  }
  CHECK(reader->at_eof());
  writer->close();
  co_await writer->wait_closed();
}

TEST_CASE_METHOD(NativeFixture, "readexactly at the peer's EOF gives IncompleteReadError",
                 "[streams-api][peer]") {
  PythonPeer peer({"half-close-server", "tcp:127.0.0.1:0"});
  loop->run_until_complete(partial_at_eof(port_of(peer.ready())));
  peer.finish();
}

static Coro<void> drain_into_reset(std::uint16_t port, std::error_code* got) {
  StreamPair s = co_await open_connection("127.0.0.1", port);
  s.second->write("!");  // the peer aborts (RST) after one byte
  const std::string chunk(256 * 1024, 'x');
  for (int i = 0; i < 2000; ++i) {
    try {
      s.second->write(chunk);
      co_await s.second->drain();
    } catch (const std::system_error& e) {
      *got = e.code();
      break;
    }
    co_await sleep(0.002);
  }
  s.second->close();
  try {
    co_await s.second->wait_closed();
  } catch (const std::system_error&) {
  }
}

TEST_CASE_METHOD(NativeFixture, "drain raises the connection error after a reset",
                 "[streams-api][peer][faults]") {
  PythonPeer peer({"reset-server", "tcp:127.0.0.1:0"});
  std::error_code got;
  loop->run_until_complete(drain_into_reset(port_of(peer.ready()), &got));
  INFO("got " << got.message());
  CHECK((got == std::errc::connection_reset || got == std::errc::broken_pipe));
  peer.finish();
}

static Coro<void> serve_asyncio_client(bool unix_socket, int* handled, std::string* said) {
  const std::string path = socket_path("server");
  ClientConnectedCallback cb = [handled](std::shared_ptr<StreamReader> r,
                                         std::shared_ptr<StreamWriter> w) {
    ++*handled;
    return echo_until_eof(std::move(r), std::move(w));
  };
  Ref<Server> server;
  if (unix_socket)
    server = co_await start_unix_server(cb, path);
  else
    server = co_await start_server(cb, "127.0.0.1", 0, {.server = {.backlog = 10}});
  REQUIRE(server->sockets().size() == 1);
  const std::string addr =
      unix_socket ? "unix:" + path
                  : "tcp:127.0.0.1:" + std::to_string(server->sockets()[0].address.port);
  PythonPeer peer(strings("client-echo", addr, "1048576"));
  while (!peer.exited()) co_await sleep(0.01);
  *said = peer.finish();
  server->close();
  co_await server->wait_closed();
}

TEST_CASE_METHOD(NativeFixture, "start_server: a coroutine handler echoes 1 MiB to asyncio",
                 "[streams-api][peer][server]") {
  const bool unix_socket = GENERATE(false, true);
  int handled = 0;
  std::string said;
  loop->run_until_complete(serve_asyncio_client(unix_socket, &handled, &said));
  CHECK(said == "OK 1048576\n");
  CHECK(handled == 1);
}

struct ProducerStats {
  std::string payload;  // made up front: writing must outpace the reader, even under valgrind
  int over_high = 0;
  std::size_t max_after_waiting_drain = 0;  // after a drain that had to wait (writing paused)
  std::size_t max_after_drain = 0;          // after any drain
};

static Coro<void> produce(std::shared_ptr<StreamReader>, std::shared_ptr<StreamWriter> writer,
                          std::size_t total, ProducerStats* stats) {
  const std::size_t high = writer->transport()->get_write_buffer_limits().second;
  for (std::size_t sent = 0; sent < total; sent += 1 << 20) {
    writer->write(std::string_view(stats->payload).substr(sent, 1 << 20));
    const bool paused = writer->transport()->get_write_buffer_size() > high;
    if (paused) ++stats->over_high;
    co_await writer->drain();
    const std::size_t left = writer->transport()->get_write_buffer_size();
    stats->max_after_drain = std::max(stats->max_after_drain, left);
    if (paused) stats->max_after_waiting_drain = std::max(stats->max_after_waiting_drain, left);
  }
  writer->close();
  co_await writer->wait_closed();
}

static Coro<void> serve_slow_reader(std::size_t total, ProducerStats* stats, std::string* said) {
  ClientConnectedCallback cb = [total, stats](std::shared_ptr<StreamReader> r,
                                              std::shared_ptr<StreamWriter> w) {
    return produce(std::move(r), std::move(w), total, stats);
  };
  Ref<Server> server = co_await start_server(cb, "127.0.0.1", 0);
  const std::uint16_t port = server->sockets()[0].address.port;
  PythonPeer peer(
      strings("slow-reader", "tcp:127.0.0.1:" + std::to_string(port), std::to_string(total)));
  while (!peer.exited()) co_await sleep(0.01);
  *said = peer.finish();
  server->close();
  co_await server->wait_closed();
}

TEST_CASE_METHOD(NativeFixture, "drain waits for a slow asyncio reader (write flow control)",
                 "[streams-api][peer][flow]") {
  const std::size_t total = 16u << 20;
  ProducerStats stats;
  stats.payload = peer_pattern(0, total);
  std::string said;
  loop->run_until_complete(serve_slow_reader(total, &stats, &said));
  CHECK(said == "OK " + std::to_string(total) + "\n");
  CHECK(stats.over_high >= 1);  // the buffer went over the high-water mark...
  // ...and a drain that waited returned only once it was down to the low-water mark; one that
  // found writing not paused returns at once, as asyncio's does, with at most `high` buffered.
  CHECK(stats.max_after_waiting_drain <= 16384);
  CHECK(stats.max_after_drain <= 65536);
}

static Coro<void> failing_and_plain_callbacks(EventLoop& loop) {
  (void)loop;
  // A coroutine callback that raises: reported, and its connection closed.
  ClientConnectedCallback failing = [](std::shared_ptr<StreamReader> r,
                                       std::shared_ptr<StreamWriter>) -> Coro<void> {
    std::string line = co_await r->readline();
    throw ValueError("bad request: " + line);
  };
  Ref<Server> s1 = co_await start_server(failing, "127.0.0.1", 0);
  StreamPair c1 = co_await open_connection("127.0.0.1", s1->sockets()[0].address.port);
  c1.second->write("hello\n");
  std::string nothing = co_await c1.first->read();  // EOF: the server closed
  CHECK(nothing.empty());
  c1.second->close();
  co_await c1.second->wait_closed();
  s1->close();
  co_await s1->wait_closed();

  // A plain callback runs in connection_made; the protocol keeps its writer until the end.
  int calls = 0;
  ClientConnectedCallback plain = [&calls](std::shared_ptr<StreamReader>,
                                           std::shared_ptr<StreamWriter> w) {
    ++calls;
    w->write("hi from a plain callback");
    w->close();
  };
  Ref<Server> s2 = co_await start_server(plain, strings("127.0.0.1"), 0);
  StreamPair c2 = co_await open_connection("127.0.0.1", s2->sockets()[0].address.port);
  std::string hi = co_await c2.first->read();
  CHECK(hi == "hi from a plain callback");
  CHECK(calls == 1);
  c2.second->close();
  co_await c2.second->wait_closed();
  s2->close();
  co_await s2->wait_closed();

  try {
    co_await start_server(plain, "127.0.0.1", 0, {.limit = 0});
    FAIL("limit 0");
  } catch (const ValueError&) {
  }
}

TEST_CASE_METHOD(NativeFixture, "start_server: a failing handler is reported; plain callbacks",
                 "[streams-api][server][faults]") {
  loop->run_until_complete(failing_and_plain_callbacks(*loop));
  REQUIRE(reported.size() == 1);
  CHECK(reported[0].message == "Unhandled exception in client_connected_cb");
  CHECK(reported[0].exception_text() == "bad request: hello\n");
  reported.clear();
}

// ---- start_tls ----------------------------------------------------------------------------------

static Coro<void> starttls_streams(std::uint16_t port, std::string* secure) {
  StreamPair s = co_await open_connection("127.0.0.1", port);
  s.second->write("STARTTLS\n");
  std::string go = co_await s.first->readline();
  CHECK(go == "GO\n");
  TlsContext tls{.ca_file = test_cert().cert};
  Ref<WriteTransport> plain = s.second->transport();
  co_await s.second->start_tls(&tls, {.server_hostname = "localhost"});
  CHECK(plain->is_closing());  // retired
  CHECK(s.second->transport() != plain);
  CHECK(s.second->get_extra_info("ssl_object").has_value());
  CHECK_FALSE(s.second->can_write_eof());
  s.second->write("hello\n");
  *secure = co_await s.first->readline();
  std::string eof = co_await s.first->read();
  CHECK(eof.empty());
  s.second->close();
  co_await s.second->wait_closed();
}

TEST_CASE_METHOD(NativeFixture, "StreamWriter.start_tls upgrades reader and writer",
                 "[streams-api][peer][tls]") {
  PythonPeer peer(strings("starttls-server", "tcp:127.0.0.1:0", test_cert().cert, test_cert().key));
  std::string secure;
  loop->run_until_complete(starttls_streams(port_of(peer.ready()), &secure));
  CHECK(secure == "secure: hello\n");
  peer.finish();
}
#endif  // __EMSCRIPTEN__
