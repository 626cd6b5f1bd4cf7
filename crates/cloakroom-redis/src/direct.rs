//! A connection to one Redis server over plain TCP that does its I/O in
//! the tasks that call it: no task of its own, no channels, and the reply
//! reader of [`crate::resp`].
//!
//! Each thread of a current-thread runtime (an actix-web worker) has one
//! (see [`crate::conn::Pool`]), and its calls are the only ones on it, up
//! to `max(max_connections, 2 × CPUs)` threads; past that, threads
//! share. A
//! redis-rs multiplexed connection would pass each call to its I/O task
//! and each reply back through a channel, and read replies with a slower
//! reader; measured on a session write, that was most of the difference
//! this connection makes.
//!
//! Calls pipeline: each appends its command to the output, takes a ticket
//! and waits. Whichever waiting call is polled writes what is pending,
//! reads what has arrived, and hands each reply to the call it answers,
//! in order. A write starts once every command written before has its
//! replies, so the commands of calls that arrive meanwhile go out
//! together, in one system call on each side. The socket wakes only the
//! call that last found it not ready (`driver`), so a call that stops
//! waiting while it is the driver wakes another waiting call to take
//! over.
//!
//! A call given up (its timeout, a dropped request) keeps its place: its
//! replies are read and thrown away, so the replies of the calls after it
//! stay in step. A read or write error, or a reply that does not parse,
//! closes the connection and fails every call on it that has no answer
//! yet; the next call connects again. So does the next call on a connection whose written
//! commands have waited longer than the timeout for their replies, or
//! that Redis closed while it was idle.

use crate::resp;
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// See the module doc. Clones share the connection.
#[derive(Clone)]
pub(crate) struct Direct {
    shared: Arc<Shared>,
}

struct Shared {
    host: String,
    port: u16,
    settings: redis::RedisConnectionInfo,
    /// For connecting and signing in, and how long written commands may
    /// wait for their replies before the connection counts as stalled.
    timeout: Duration,
    state: Mutex<State>,
    /// Held while connecting, so that calls arriving meanwhile wait for
    /// that connection instead of opening their own.
    dialing: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    link: Option<Link>,
    /// Counts links made; a ticket names the link it was taken on.
    generation: u64,
    /// Answers that had arrived, not yet taken, when their link was
    /// dropped: by generation and ticket, until their call takes them (or
    /// is dropped).
    settled: Vec<(u64, u64, RedisResult<Vec<Value>>)>,
}

impl State {
    /// Drops the link, keeping the answers already read from it, and
    /// wakes every call still waiting on it: each then finds it gone.
    fn drop_link(&mut self) {
        let Some(mut link) = self.link.take() else {
            return;
        };
        for (entry, ticket) in link.waiting.iter_mut().zip(link.first..) {
            if let Some(waker) = entry.waker.take() {
                waker.wake();
            }
            if matches!(entry.stage, Stage::Answered(_))
                && let Stage::Answered(answer) = std::mem::replace(&mut entry.stage, Stage::Closed)
            {
                self.settled.push((self.generation, ticket, answer));
            }
        }
    }

    /// The answer `ticket` of link `generation` got before its link was
    /// dropped, if any.
    fn take_settled(&mut self, generation: u64, ticket: u64) -> Option<RedisResult<Vec<Value>>> {
        let i = self
            .settled
            .iter()
            .position(|(g, t, _)| (*g, *t) == (generation, ticket))?;
        Some(self.settled.swap_remove(i).2)
    }
}

/// One open connection and the calls waiting on it.
struct Link {
    stream: TcpStream,
    /// Commands not yet written, from `written` on.
    output: Vec<u8>,
    written: usize,
    /// Bytes read, of which `input[..filled]` hold data and
    /// `input[..consumed]` have been read as replies.
    input: Vec<u8>,
    filled: usize,
    consumed: usize,
    /// The calls in the order of their replies; `waiting[0]` has ticket
    /// `first`.
    waiting: VecDeque<Waiting>,
    first: u64,
    /// How many of `waiting` (from the front) have all their replies.
    answered: usize,
    /// The ticket whose task the socket wakes when ready.
    driver: Option<u64>,
    /// Tickets below this one have their commands written.
    sent: u64,
    /// When the last write started.
    sent_at: Instant,
}

struct Waiting {
    /// Replies to throw away first (`MULTI` and `QUEUED`).
    skip: usize,
    /// Replies to keep after those.
    want: usize,
    replies: Vec<Value>,
    /// The call's task, woken when its replies are in.
    waker: Option<Waker>,
    stage: Stage,
}

enum Stage {
    Waiting,
    Answered(RedisResult<Vec<Value>>),
    /// The answer was taken, or nobody waits for it any more.
    Closed,
}

const READ_CHUNK: usize = 16 * 1024;

impl Direct {
    /// A connection to `host:port` with `settings` (credentials and
    /// database), made by its first call.
    pub(crate) fn new(
        host: String,
        port: u16,
        settings: redis::RedisConnectionInfo,
        timeout: Duration,
    ) -> Direct {
        Direct {
            shared: Arc::new(Shared {
                host,
                port,
                settings,
                timeout,
                state: Mutex::default(),
                dialing: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The host and port, when a connection of this kind can serve
    /// `info`: plain TCP and RESP2, as the store's data connections are.
    pub(crate) fn serves(info: &redis::ConnectionInfo) -> Option<(String, u16)> {
        match info.addr() {
            redis::ConnectionAddr::Tcp(host, port)
                if info.redis_settings().protocol() == redis::ProtocolVersion::RESP2 =>
            {
                Some((host.clone(), *port))
            }
            _ => None,
        }
    }

    /// Sends `command` (one or more packed commands) and waits for its
    /// replies: `skip` thrown away, then `want` returned.
    async fn call(&self, command: &[u8], skip: usize, want: usize) -> RedisResult<Vec<Value>> {
        if skip + want == 0 {
            // Nothing would tell its replies from the next call's.
            return Err(RedisError::from((
                ErrorKind::Client,
                "a command that Redis does not answer",
            )));
        }
        let (generation, ticket) = self.enqueue(command, skip, want).await?;
        let mut ticket = Ticket {
            shared: &self.shared,
            generation,
            ticket,
            done: false,
        };
        poll_fn(|cx| ticket.poll(cx)).await
    }

    /// Queues `command` on the open connection, connecting first if there
    /// is none.
    async fn enqueue(&self, command: &[u8], skip: usize, want: usize) -> RedisResult<(u64, u64)> {
        loop {
            {
                let mut state = self.shared.lock();
                let generation = state.generation;
                if let Some(link) = &mut state.link {
                    if link.alive(self.shared.timeout) {
                        return Ok((generation, link.push(command, skip, want)));
                    }
                    // Closed while idle (a Redis restart), or stalled:
                    // connect again now rather than fail this call.
                    state.drop_link();
                }
            }
            let _dialing = self.shared.dialing.lock().await;
            if self.shared.lock().link.is_some() {
                continue;
            }
            let link = self.shared.dial().await?;
            let mut state = self.shared.lock();
            state.generation += 1;
            state.link = Some(link);
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // No code under this lock panics halfway through a change; a
        // poisoned lock still holds a consistent state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a connection, and signs in and selects the database on it.
    async fn dial(&self) -> RedisResult<Link> {
        let connect = TcpStream::connect((self.host.as_str(), self.port));
        let stream = match tokio::time::timeout(self.timeout, connect).await {
            Ok(stream) => stream?,
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connecting to Redis timed out",
                )
                .into());
            }
        };
        stream.set_nodelay(true)?;
        let mut link = Link::new(stream);
        let mut hello = Vec::new();
        let mut replies = 0;
        let s = &self.settings;
        if let Some(password) = s.password() {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = s.username() {
                auth.arg(user);
            }
            auth.arg(password).write_packed_command(&mut hello);
            replies += 1;
        }
        if s.db() != 0 {
            redis::cmd("SELECT")
                .arg(s.db())
                .write_packed_command(&mut hello);
            replies += 1;
        }
        if replies > 0 {
            let ticket = link.push(&hello, 0, replies);
            let answer =
                tokio::time::timeout(self.timeout, poll_fn(|cx| link.poll_alone(cx, ticket)))
                    .await
                    .map_err(|_| {
                        RedisError::from(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "signing in to Redis timed out",
                        ))
                    })??;
            for reply in answer {
                // `WRONGPASS` and the like: the caller tells settings
                // that can never work from a server not reachable yet.
                reply.extract_error()?;
            }
        }
        Ok(link)
    }
}

impl Link {
    fn new(stream: TcpStream) -> Link {
        Link {
            stream,
            output: Vec::new(),
            written: 0,
            input: vec![0; READ_CHUNK],
            filled: 0,
            consumed: 0,
            waiting: VecDeque::new(),
            first: 0,
            answered: 0,
            driver: None,
            sent: 0,
            sent_at: Instant::now(),
        }
    }

    /// Whether commands are being written, or written and awaiting
    /// replies.
    fn in_flight(&self) -> bool {
        self.written > 0 || self.first + (self.answered as u64) < self.sent
    }

    /// Whether the connection can take a command. Redis sends nothing on
    /// an idle connection, so anything to read there (most often the end
    /// of the stream, after a restart or an idle timeout) means it cannot.
    /// Asked of the socket itself: the runtime may not have seen the news
    /// yet.
    ///
    /// A connection whose last write started longer than `patience` ago
    /// and still awaits replies (or is not all written) cannot either: a
    /// host that froze, or a connection dropped silently on the way, never
    /// fails the socket, and commands queued behind are not written until
    /// those replies come. The calls that sent them have given up by then
    /// (their timeout is the store's); calls queued behind fail at once,
    /// and later ones connect anew. Nothing left half-written is sent
    /// later.
    fn alive(&mut self, patience: Duration) -> bool {
        if self.in_flight() {
            return self.sent_at.elapsed() <= patience;
        }
        let mut byte = [std::mem::MaybeUninit::uninit()];
        match socket2::SockRef::from(&self.stream).peek(&mut byte) {
            Err(e) => e.kind() == io::ErrorKind::WouldBlock,
            Ok(_) => false,
        }
    }

    /// Queues `command`, answered by `skip + want` replies; returns its
    /// ticket.
    fn push(&mut self, command: &[u8], skip: usize, want: usize) -> u64 {
        self.output.extend_from_slice(command);
        let ticket = self.first + self.waiting.len() as u64;
        self.waiting.push_back(Waiting {
            skip,
            want,
            replies: Vec::with_capacity(want),
            waker: None,
            stage: Stage::Waiting,
        });
        ticket
    }

    fn entry(&mut self, ticket: u64) -> Option<&mut Waiting> {
        let index = usize::try_from(ticket.checked_sub(self.first)?).ok()?;
        self.waiting.get_mut(index)
    }

    /// Takes `ticket`'s answer if it is in.
    fn take(&mut self, ticket: u64) -> Option<RedisResult<Vec<Value>>> {
        let entry = self.entry(ticket)?;
        if !matches!(entry.stage, Stage::Answered(_)) {
            return None;
        }
        let Stage::Answered(answer) = std::mem::replace(&mut entry.stage, Stage::Closed) else {
            return None;
        };
        self.release(ticket);
        Some(answer)
    }

    /// After `ticket` stopped waiting: drops finished entries from the
    /// front, and if the socket would have woken `ticket`, wakes another
    /// waiting call to watch it instead.
    fn release(&mut self, ticket: u64) {
        self.drop_finished();
        if self.driver == Some(ticket) {
            self.driver = None;
            let next = self
                .waiting
                .iter_mut()
                .zip(self.first..)
                .find(|(w, _)| matches!(w.stage, Stage::Waiting) && w.waker.is_some());
            if let Some((w, next)) = next
                && let Some(waker) = w.waker.take()
            {
                // The woken call is the driver until it polls: if it is
                // dropped first, its drop hands over again.
                self.driver = Some(next);
                waker.wake();
            }
        }
    }

    /// Writes what may be written and reads what has arrived, handing
    /// replies to their calls. `Ok` once the socket has nothing more for
    /// now (it then wakes `cx`'s task); an error means the connection is
    /// broken.
    fn drive(&mut self, cx: &mut Context<'_>, ticket: u64) -> RedisResult<()> {
        loop {
            self.write(cx, ticket)?;
            // Readiness first: a call that finds none costs no system call.
            match self.stream.poll_read_ready(cx) {
                Poll::Ready(ready) => ready?,
                Poll::Pending => {
                    self.driver = Some(ticket);
                    return Ok(());
                }
            }
            if self.filled == self.input.len() {
                self.make_room();
            }
            match self.stream.try_read(&mut self.input[self.filled..]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        "Redis closed the connection",
                    )
                    .into());
                }
                Ok(n) => {
                    self.filled += n;
                    self.read_replies()?;
                }
                // Readiness was stale; cleared now, so the next turn waits.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Writes the queued commands, once every command written before has
    /// its replies: the commands of the calls that arrive meanwhile go out
    /// together, in one system call on each side (as a multiplexed
    /// connection's own task batches them), and an idle connection writes
    /// at once.
    fn write(&mut self, cx: &mut Context<'_>, ticket: u64) -> RedisResult<()> {
        if self.output.is_empty() {
            return Ok(());
        }
        if self.written == 0 {
            if self.first + (self.answered as u64) < self.sent {
                return Ok(());
            }
            self.sent_at = Instant::now();
        }
        while self.written < self.output.len() {
            match self.stream.try_write(&self.output[self.written..]) {
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match self.stream.poll_write_ready(cx) {
                        Poll::Ready(ready) => ready?,
                        Poll::Pending => {
                            self.driver = Some(ticket);
                            return Ok(());
                        }
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.output.clear();
        if self.output.capacity() > 4 * READ_CHUNK {
            self.output.shrink_to(READ_CHUNK);
        }
        self.written = 0;
        self.sent = self.first + self.waiting.len() as u64;
        Ok(())
    }

    /// Moves unread bytes to the front, growing the buffer when they fill
    /// most of it (a reply larger than it).
    fn make_room(&mut self) {
        self.input.copy_within(self.consumed..self.filled, 0);
        self.filled -= self.consumed;
        self.consumed = 0;
        if self.filled > self.input.len() / 2 {
            self.input.resize(self.input.len() * 2, 0);
        }
    }

    fn read_replies(&mut self) -> RedisResult<()> {
        while let Some((value, used)) = resp::reply(&self.input[self.consumed..self.filled])? {
            self.consumed += used;
            let Some(entry) = self.waiting.get_mut(self.answered) else {
                return Err(RedisError::from((
                    ErrorKind::Parse,
                    "a reply from Redis that no command asked for",
                )));
            };
            if entry.skip > 0 {
                // `MULTI`'s `OK` and each `QUEUED`; a command refused
                // here makes `EXEC` answer `EXECABORT`, which is kept.
                entry.skip -= 1;
            } else {
                entry.replies.push(value);
            }
            if entry.skip == 0 && entry.replies.len() >= entry.want {
                self.answered += 1;
                if matches!(entry.stage, Stage::Waiting) {
                    entry.stage = Stage::Answered(Ok(std::mem::take(&mut entry.replies)));
                    if let Some(waker) = entry.waker.take() {
                        waker.wake();
                    }
                } else {
                    // Given up by its call: thrown away.
                    entry.replies = Vec::new();
                }
            }
        }
        if self.consumed == self.filled {
            self.consumed = 0;
            self.filled = 0;
            if self.input.len() > 4 * READ_CHUNK {
                self.input = vec![0; READ_CHUNK];
            }
        }
        self.drop_finished();
        Ok(())
    }

    /// Drops the entries at the front that have all their replies and
    /// nobody waiting for them.
    fn drop_finished(&mut self) {
        while self.answered > 0
            && self
                .waiting
                .front()
                .is_some_and(|w| matches!(w.stage, Stage::Closed))
        {
            self.waiting.pop_front();
            self.first += 1;
            self.answered -= 1;
        }
    }

    /// Waits for `ticket` on a link no other call uses yet (the sign-in).
    fn poll_alone(&mut self, cx: &mut Context<'_>, ticket: u64) -> Poll<RedisResult<Vec<Value>>> {
        if let Err(e) = self.drive(cx, ticket) {
            return Poll::Ready(Err(e));
        }
        match self.take(ticket) {
            Some(answer) => Poll::Ready(answer),
            None => Poll::Pending,
        }
    }
}

/// A call's place on a link; giving it up (drop) keeps the link in step.
struct Ticket<'a> {
    shared: &'a Shared,
    generation: u64,
    ticket: u64,
    done: bool,
}

impl Ticket<'_> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<RedisResult<Vec<Value>>> {
        let mut state = self.shared.lock();
        let generation = state.generation;
        let link = match &mut state.link {
            Some(link) if generation == self.generation => link,
            _ => {
                self.done = true;
                let settled = state.take_settled(self.generation, self.ticket);
                return Poll::Ready(settled.unwrap_or_else(|| Err(lost())));
            }
        };
        if let Some(answer) = link.take(self.ticket) {
            self.done = true;
            return Poll::Ready(answer);
        }
        if let Err(e) = link.drive(cx, self.ticket) {
            // Answers read before the error are kept, this call's too.
            state.drop_link();
            self.done = true;
            let settled = state.take_settled(self.generation, self.ticket);
            return Poll::Ready(settled.unwrap_or(Err(e)));
        }
        if let Some(answer) = link.take(self.ticket) {
            self.done = true;
            return Poll::Ready(answer);
        }
        if let Some(entry) = link.entry(self.ticket) {
            match &mut entry.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
        }
        Poll::Pending
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut state = self.shared.lock();
        let generation = state.generation;
        match &mut state.link {
            Some(link) if generation == self.generation => {
                if let Some(entry) = link.entry(self.ticket) {
                    entry.stage = Stage::Closed;
                    entry.waker = None;
                    link.release(self.ticket);
                }
            }
            _ => drop(state.take_settled(self.generation, self.ticket)),
        }
    }
}

/// What a call gets when its connection broke under another call.
fn lost() -> RedisError {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        "the connection to Redis was lost",
    )
    .into()
}

impl redis::aio::ConnectionLike for Direct {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut packed = Vec::new();
            cmd.write_packed_command(&mut packed);
            let mut replies = self.call(&packed, 0, 1).await?;
            replies
                .pop()
                .ok_or_else(|| RedisError::from((ErrorKind::Client, "no reply")))
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut replies = self
                .call(&pipeline.get_packed_pipeline(), offset, count)
                .await?;
            // `EXECABORT`: Redis refused the whole transaction.
            if pipeline.is_transaction()
                && let Some(Value::ServerError(_)) = replies.last()
                && let Some(Value::ServerError(e)) = replies.pop()
            {
                return Err(e.into());
            }
            Ok(replies)
        })
    }

    fn get_db(&self) -> i64 {
        self.shared.settings.db()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_proxy::Proxy;
    use cloakroom_testkit::RedisServer;

    fn direct(server: &RedisServer, settings: redis::RedisConnectionInfo) -> Direct {
        Direct::new(
            "127.0.0.1".to_owned(),
            server.port,
            settings,
            Duration::from_secs(2),
        )
    }

    async fn echo(conn: &mut Direct, text: &str) -> RedisResult<String> {
        redis::cmd("ECHO").arg(text).query_async(conn).await
    }

    #[tokio::test]
    async fn concurrent_calls_each_get_their_own_reply() {
        let server = RedisServer::start();
        let conn = direct(&server, Default::default());
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..300 {
            let mut conn = conn.clone();
            calls.spawn(async move { (i, echo(&mut conn, &i.to_string()).await) });
        }
        while let Some(done) = calls.join_next().await {
            let (i, reply) = done.unwrap();
            assert_eq!(reply.unwrap(), i.to_string());
        }
    }

    #[test]
    fn calls_from_many_threads_each_get_their_own_reply() {
        let server = RedisServer::start();
        let conn = direct(&server, Default::default());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut calls = tokio::task::JoinSet::new();
            for i in 0..1000 {
                let mut conn = conn.clone();
                calls.spawn(async move { (i, echo(&mut conn, &i.to_string()).await) });
            }
            while let Some(done) = calls.join_next().await {
                let (i, reply) = done.unwrap();
                assert_eq!(reply.unwrap(), i.to_string());
            }
        });
    }

    /// The reply of a call given up is read and thrown away, not handed
    /// to the next call.
    #[tokio::test]
    async fn a_call_given_up_leaves_the_replies_in_step() {
        let server = RedisServer::start();
        let mut conn = direct(&server, Default::default());
        echo(&mut conn, "connected").await.unwrap();
        // Redis answers this after 300 ms, with nil.
        let mut blpop = redis::cmd("BLPOP");
        blpop.arg("nothing-here").arg(0.3);
        let mut blocked = conn.clone();
        let gave_up = tokio::time::timeout(
            Duration::from_millis(20),
            blpop.query_async::<Value>(&mut blocked),
        )
        .await;
        assert!(gave_up.is_err(), "the call should have been given up");
        assert_eq!(echo(&mut conn, "mine").await.unwrap(), "mine");
        assert_eq!(echo(&mut conn, "next").await.unwrap(), "next");
    }

    /// The call woken to watch the socket in place of one that finished
    /// is dropped before it runs: the next waiting call must watch it.
    #[tokio::test]
    async fn a_call_handed_the_socket_and_dropped_hands_it_on() {
        use std::future::Future;
        let server = RedisServer::start();
        let conn = direct(&server, Default::default());
        echo(&mut conn.clone(), "connected").await.unwrap();
        let blpop = |key: &str, seconds: f64| {
            let mut conn = conn.clone();
            let mut cmd = redis::cmd("BLPOP");
            cmd.arg(key).arg(seconds);
            Box::pin(async move { cmd.query_async::<Value>(&mut conn).await })
        };
        // X is written at once and answered in 200 ms; Y waits behind it.
        let mut x = blpop("x", 0.2);
        let mut y = Some(blpop("y", 0.3));
        poll_fn(|cx| {
            assert!(x.as_mut().poll(cx).is_pending());
            assert!(y.as_mut().is_some_and(|y| y.as_mut().poll(cx).is_pending()));
            Poll::Ready(())
        })
        .await;
        // Z, a task of its own, waits behind both.
        let mut z_conn = conn.clone();
        let z = tokio::spawn(async move { echo(&mut z_conn, "z").await });
        // Long enough for Z to queue its command, well before X's reply.
        tokio::time::sleep(Duration::from_millis(50)).await;
        // X polled last: its task is the one the socket wakes. Once X has
        // its reply it hands the socket to Y, which is dropped unpolled.
        poll_fn(|cx| match x.as_mut().poll(cx) {
            Poll::Ready(reply) => {
                y = None;
                Poll::Ready(reply)
            }
            Poll::Pending => Poll::Pending,
        })
        .await
        .unwrap();
        // Waiting on the task does not poll the call: only the socket or
        // a hand-over wakes it.
        let z = tokio::time::timeout(Duration::from_secs(1), z)
            .await
            .expect("Z should not wait for ever");
        assert_eq!(z.unwrap().unwrap(), "z");
    }

    /// Replies that never come (a frozen host, a connection dropped on
    /// the way) fail the connection once they are overdue, and the next
    /// call connects anew.
    #[tokio::test]
    async fn a_stalled_connection_is_replaced() {
        let server = RedisServer::start();
        let proxy = Proxy::start(server.addr()).await;
        let mut conn = Direct::new(
            "127.0.0.1".to_owned(),
            proxy.port,
            Default::default(),
            Duration::from_millis(300),
        );
        echo(&mut conn, "through").await.unwrap();
        proxy.black_hole();
        let lost = tokio::time::timeout(Duration::from_millis(300), echo(&mut conn, "lost")).await;
        assert!(lost.is_err(), "the black hole should swallow it");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let again = tokio::time::timeout(Duration::from_secs(2), echo(&mut conn, "again")).await;
        assert_eq!(again.expect("a new connection").unwrap(), "again");
    }

    /// Redis answers, then closes the connection: the answer is kept, and
    /// the next call connects anew.
    #[tokio::test]
    async fn an_answer_read_before_the_connection_closed_is_kept() {
        use std::future::Future;
        let server = RedisServer::start();
        let mut conn = direct(&server, Default::default());
        let id: i64 = redis::cmd("CLIENT")
            .arg("ID")
            .query_async(&mut conn)
            .await
            .unwrap();
        let mut killer = conn.clone();
        let mut kill = Box::pin(async move {
            redis::cmd("CLIENT")
                .arg("KILL")
                .arg("ID")
                .arg(id)
                .arg("SKIPME")
                .arg("no")
                .query_async::<i64>(&mut killer)
                .await
        });
        poll_fn(|cx| {
            assert!(kill.as_mut().poll(cx).is_pending());
            Poll::Ready(())
        })
        .await;
        // Nothing polls meanwhile: the answer and the end of the stream
        // are both in the socket when the call reads it.
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(kill.await.unwrap(), 1);
        assert_eq!(echo(&mut conn, "after").await.unwrap(), "after");
    }

    #[tokio::test]
    async fn a_restarted_server_serves_the_first_call_after() {
        let mut server = RedisServer::start();
        let mut conn = direct(&server, Default::default());
        echo(&mut conn, "before").await.unwrap();
        server.kill();
        server.restart();
        assert_eq!(echo(&mut conn, "after").await.unwrap(), "after");
    }

    #[tokio::test]
    async fn calls_fail_while_the_server_is_down_and_work_once_it_is_back() {
        let mut server = RedisServer::start();
        let mut conn = direct(&server, Default::default());
        echo(&mut conn, "before").await.unwrap();
        server.kill();
        for _ in 0..3 {
            let e = echo(&mut conn, "down").await.unwrap_err();
            assert!(crate::conn::unreachable(&e), "{e}");
        }
        server.restart();
        assert_eq!(echo(&mut conn, "back").await.unwrap(), "back");
    }

    #[tokio::test]
    async fn credentials_and_database_are_used() {
        let server = RedisServer::start_with(&["--requirepass", "s3cret"]);
        let settings = redis::RedisConnectionInfo::default()
            .set_password("s3cret")
            .set_db(2);
        let mut conn = direct(&server, settings);
        let () = redis::cmd("SET")
            .arg("k")
            .arg("in db 2")
            .query_async(&mut conn)
            .await
            .unwrap();
        let got = server.cli(&["-a", "s3cret", "--no-auth-warning", "-n", "2", "GET", "k"]);
        assert_eq!(got, "in db 2");

        let wrong = redis::RedisConnectionInfo::default().set_password("wrong");
        let e = echo(&mut direct(&server, wrong), "x").await.unwrap_err();
        assert_eq!(e.code(), Some("WRONGPASS"), "{e}");
        assert!(
            !crate::conn::unreachable(&e),
            "a wrong password is a setting"
        );
    }

    #[tokio::test]
    async fn a_reply_larger_than_the_read_buffer_arrives_whole() {
        let server = RedisServer::start();
        let mut conn = direct(&server, Default::default());
        let big: String = (0..READ_CHUNK * 6)
            .map(|i| (b'a' + (i % 26) as u8) as char)
            .collect();
        let () = redis::cmd("SET")
            .arg("big")
            .arg(&big)
            .query_async(&mut conn)
            .await
            .unwrap();
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let mut conn = conn.clone();
            calls.spawn(async move {
                redis::cmd("GET")
                    .arg("big")
                    .query_async::<String>(&mut conn)
                    .await
            });
        }
        while let Some(done) = calls.join_next().await {
            assert!(done.unwrap().unwrap() == big);
        }
    }

    #[tokio::test]
    async fn server_errors_keep_their_codes() {
        let server = RedisServer::start();
        let mut conn = direct(&server, Default::default());
        let e = redis::cmd("NOSUCHCOMMAND")
            .query_async::<Value>(&mut conn)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("ERR"));
        // A command refused while queued: Redis discards the transaction.
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg("a")
            .arg(1)
            .cmd("SET")
            .arg("only-a-key");
        let e = pipe.query_async::<Value>(&mut conn).await.unwrap_err();
        assert!(crate::discarded_by_redirect(&e), "{e:?}");
        assert_eq!(server.cli(&["EXISTS", "a"]), "0");
        // A transaction that runs, and a plain pipeline.
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("INCR").arg("n").cmd("INCR").arg("n");
        let (a, b): (i64, i64) = pipe.query_async(&mut conn).await.unwrap();
        assert_eq!((a, b), (1, 2));
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg("n").cmd("ECHO").arg("x");
        let (n, x): (i64, String) = pipe.query_async(&mut conn).await.unwrap();
        assert_eq!((n, x.as_str()), (2, "x"));
    }
}
