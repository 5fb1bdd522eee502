//! Mocked tasks: a task's body replaced, for one test environment, by a fixed output, a
//! sequence of outputs, a closure, or an attempt that never answers; every call recorded
//! with its arguments.

use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{de::DeserializeOwned, Serialize};

use crate::codec::{self, CodecError};
use crate::task::{AttemptClass, Task, TaskFailure};

/// What a mock answers to one call.
pub(super) enum Answer {
    /// The task returned this encoded output, judged as `class`.
    Output {
        /// Encoded output.
        bytes: Vec<u8>,
        /// Success or which kind of failure.
        class: AttemptClass,
    },
    /// The attempt never returns: it ends at its timeout, or when the run is cancelled.
    Hang,
}

/// Answers one call, given its encoded arguments; `Err` says why it cannot.
type Behaviour = Box<dyn FnMut(&[u8]) -> Result<Answer, String> + Send>;

/// Encodes the output a failure the environment observed turns into, when the task's
/// output type can carry it.
pub(super) type FailureOutput = fn(TaskFailure) -> Option<Result<Vec<u8>, CodecError>>;

struct MockEntry {
    behaviour: Behaviour,
    /// Counts changes of `behaviour`, so that a call puts back only the behaviour it took.
    generation: u64,
    /// Encoded arguments of every call so far, in order.
    calls: Vec<Vec<u8>>,
    failure_output: Option<FailureOutput>,
}

/// The mocks of one environment, by registered task name; shared with the handles tests
/// keep to change answers and count calls.
#[derive(Clone, Default)]
pub(super) struct Mocks {
    map: Arc<Mutex<HashMap<String, MockEntry>>>,
}

impl Mocks {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, MockEntry>> {
        // A mock closure that panicked poisons nothing we rely on: the map stays valid.
        self.map.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Records a call of mocked task `name` and answers it; `None` if it is not mocked.
    ///
    /// The behaviour runs without the lock held, so that an answer may look at other
    /// mocks (`call_count`) or change this one.
    pub(super) fn call(&self, name: &str, args: &[u8]) -> Option<Result<Answer, String>> {
        let (mut behaviour, generation) = {
            let mut map = self.lock();
            let entry = map.get_mut(name)?;
            entry.calls.push(args.to_vec());
            let busy: Behaviour =
                Box::new(|_| Err("it was called again from inside its own answer".to_string()));
            (
                std::mem::replace(&mut entry.behaviour, busy),
                entry.generation,
            )
        };
        let answer = behaviour(args);
        if let Some(entry) = self.lock().get_mut(name) {
            if entry.generation == generation {
                entry.behaviour = behaviour;
            }
        }
        Some(answer)
    }

    /// What a failure turns into for mocked task `name`, if the mock knows its type.
    pub(super) fn failure_output(&self, name: &str) -> Option<FailureOutput> {
        self.lock().get(name).and_then(|e| e.failure_output)
    }

    fn install(&self, name: &str, failure_output: Option<FailureOutput>) {
        self.lock()
            .entry(name.to_string())
            .or_insert_with(|| MockEntry {
                behaviour: Box::new(|_| {
                    Err("it was called before it was told what to answer; give it \
                         .returns(..), .returns_in_order(..), .answers(..) or .hangs()"
                        .to_string())
                }),
                generation: 0,
                calls: Vec::new(),
                failure_output,
            });
    }

    fn set(&self, name: &str, behaviour: Behaviour) {
        if let Some(entry) = self.lock().get_mut(name) {
            entry.behaviour = behaviour;
            entry.generation += 1;
        }
    }

    fn calls(&self, name: &str) -> Vec<Vec<u8>> {
        self.lock()
            .get(name)
            .map(|e| e.calls.clone())
            .unwrap_or_default()
    }
}

/// A task mocked by its type, made by [`TestEnv::mock`](super::TestEnv::mock): every
/// attempt of the task in this environment calls the mock instead of the body. Keep the
/// handle to change the answer mid-test and to check the calls.
///
/// Each attempt is one call: a retried task is called once per attempt, and its retry
/// policy judges the mock's output as it would the body's.
pub struct MockTask<T: Task> {
    mocks: Mocks,
    _task: PhantomData<fn() -> T>,
}

impl<T: Task> Clone for MockTask<T> {
    fn clone(&self) -> Self {
        MockTask {
            mocks: self.mocks.clone(),
            _task: PhantomData,
        }
    }
}

impl<T: Task> MockTask<T> {
    pub(super) fn new(mocks: Mocks) -> Self {
        mocks.install(T::NAME, Some(crate::task::erased_failure_output::<T>));
        MockTask {
            mocks,
            _task: PhantomData,
        }
    }

    /// Every call returns `output`.
    pub fn returns(self, output: T::Output) -> Self
    where
        T::Output: Clone + Send,
    {
        self.answers(move |_| output.clone())
    }

    /// Calls return `outputs` one after another (results and errors alike); a call past
    /// the last is an error of the test ([`TestError::Mock`](super::TestError::Mock)).
    pub fn returns_in_order(self, outputs: impl IntoIterator<Item = T::Output>) -> Self
    where
        T::Output: Send,
    {
        let mut queue: VecDeque<T::Output> = outputs.into_iter().collect();
        let given = queue.len();
        let behaviour: Behaviour = Box::new(move |_| match queue.pop_front() {
            Some(output) => typed_answer::<T>(&output),
            None => Err(format!(
                "it was given {given} outputs and was called once more; give it more with \
                 .returns_in_order(..)"
            )),
        });
        self.mocks.set(T::NAME, behaviour);
        self
    }

    /// Every call runs `answer` with the call's arguments (the task's argument struct).
    pub fn answers(self, mut answer: impl FnMut(T) -> T::Output + Send + 'static) -> Self {
        let behaviour: Behaviour = Box::new(move |args| {
            let call: T = codec::decode(args, || format!("arguments of task `{}`", T::NAME))
                .map_err(|e| e.to_string())?;
            typed_answer::<T>(&answer(call))
        });
        self.mocks.set(T::NAME, behaviour);
        self
    }

    /// Calls never answer: the attempt ends after the task's timeout (in virtual time,
    /// as `Err(TaskFailure::TimedOut)` and retried by its policy), or when the run is
    /// cancelled (`Err(TaskFailure::Cancelled)`), or loses a race.
    pub fn hangs(self) -> Self {
        self.mocks.set(T::NAME, Box::new(|_| Ok(Answer::Hang)));
        self
    }

    /// The arguments of every call so far, in order.
    ///
    /// # Panics
    /// If recorded arguments no longer decode as `T` (they were encoded from a `T`).
    pub fn calls(&self) -> Vec<T> {
        self.mocks
            .calls(T::NAME)
            .iter()
            .map(|args| {
                codec::decode(args, || format!("arguments of task `{}`", T::NAME))
                    .expect("a mock's calls decode as the task they were encoded from")
            })
            .collect()
    }

    /// The arguments of every call so far, decoded as `A`: for a task defined in another
    /// module, whose argument struct's fields the test cannot read, a struct of the test's
    /// own with the same field names (or some of them).
    pub fn calls_as<A: DeserializeOwned>(&self) -> Result<Vec<A>, CodecError> {
        decode_calls(&self.mocks, T::NAME)
    }

    /// The arguments of every call so far, as JSON objects (`{"card":"4242","cents":5}`).
    pub fn calls_json(&self) -> Vec<String> {
        calls_json(&self.mocks, T::NAME)
    }

    /// How many times the task was called (attempts, retries included).
    pub fn call_count(&self) -> usize {
        self.mocks.calls(T::NAME).len()
    }

    /// Asserts that the task was called exactly `times` times.
    ///
    /// # Panics
    /// With the count and the task's name when it differs.
    #[track_caller]
    pub fn assert_called(&self, times: usize) {
        let count = self.call_count();
        assert_eq!(
            count,
            times,
            "task `{}` was called {count} times, expected {times}",
            T::NAME
        );
    }
}

fn typed_answer<T: Task>(output: &T::Output) -> Result<Answer, String> {
    Ok(Answer::Output {
        bytes: codec::encode(output, || format!("output of task `{}`", T::NAME))
            .map_err(|e| e.to_string())?,
        class: T::classify(output),
    })
}

/// A task mocked by its registered name, made by
/// [`TestEnv::mock_named`](super::TestEnv::mock_named): for a task whose type the test
/// cannot name. Outputs are any serde value of the task's output type; an `Err` counts as
/// a retryable failure (the task's non-retryable list is known only to its type).
#[derive(Clone)]
pub struct NamedMock {
    mocks: Mocks,
    name: String,
}

impl NamedMock {
    pub(super) fn new(mocks: Mocks, name: &str) -> Self {
        mocks.install(name, None);
        NamedMock {
            mocks,
            name: name.to_string(),
        }
    }

    /// Every call returns `output` (encoded now).
    pub fn returns<V: Serialize>(self, output: &V) -> Self {
        let answer = named_answer(&self.name, output);
        self.mocks.set(
            &self.name,
            Box::new(move |_| match &answer {
                Ok((bytes, class)) => Ok(Answer::Output {
                    bytes: bytes.clone(),
                    class: class.clone(),
                }),
                Err(e) => Err(e.clone()),
            }),
        );
        self
    }

    /// Calls return `outputs` one after another; a call past the last is an error of
    /// the test.
    pub fn returns_in_order<V: Serialize>(self, outputs: impl IntoIterator<Item = V>) -> Self {
        let mut queue: VecDeque<_> = outputs
            .into_iter()
            .map(|o| named_answer(&self.name, &o))
            .collect();
        let given = queue.len();
        self.mocks.set(
            &self.name,
            Box::new(move |_| match queue.pop_front() {
                Some(Ok((bytes, class))) => Ok(Answer::Output { bytes, class }),
                Some(Err(e)) => Err(e),
                None => Err(format!(
                    "it was given {given} outputs and was called once more; give it more \
                     with .returns_in_order(..)"
                )),
            }),
        );
        self
    }

    /// Calls never answer (see [`MockTask::hangs`]).
    pub fn hangs(self) -> Self {
        self.mocks.set(&self.name, Box::new(|_| Ok(Answer::Hang)));
        self
    }

    /// The arguments of every call so far, decoded as `A` (the task's argument struct, or
    /// any type its fields fit).
    pub fn calls_as<A: DeserializeOwned>(&self) -> Result<Vec<A>, CodecError> {
        decode_calls(&self.mocks, &self.name)
    }

    /// The arguments of every call so far, as JSON objects.
    pub fn calls_json(&self) -> Vec<String> {
        calls_json(&self.mocks, &self.name)
    }

    /// How many times the task was called (attempts, retries included).
    pub fn call_count(&self) -> usize {
        self.mocks.calls(&self.name).len()
    }

    /// Asserts that the task was called exactly `times` times.
    ///
    /// # Panics
    /// With the count and the task's name when it differs.
    #[track_caller]
    pub fn assert_called(&self, times: usize) {
        let count = self.call_count();
        assert_eq!(
            count, times,
            "task `{}` was called {count} times, expected {times}",
            self.name
        );
    }
}

fn decode_calls<A: DeserializeOwned>(mocks: &Mocks, name: &str) -> Result<Vec<A>, CodecError> {
    mocks
        .calls(name)
        .iter()
        .map(|args| codec::decode(args, || format!("arguments of task `{name}`")))
        .collect()
}

fn calls_json(mocks: &Mocks, name: &str) -> Vec<String> {
    mocks
        .calls(name)
        .iter()
        .map(|args| codec::to_json(args).unwrap_or_else(|e| format!("<{e}>")))
        .collect()
}

fn named_answer<V: Serialize>(name: &str, output: &V) -> Result<(Vec<u8>, AttemptClass), String> {
    let bytes =
        codec::encode(output, || format!("output of task `{name}`")).map_err(|e| e.to_string())?;
    let class = if crate::outcome::is_err(output) {
        let text = codec::to_json(&bytes).unwrap_or_default();
        AttemptClass::Retryable(format!("mocked {text}"))
    } else {
        AttemptClass::Success
    };
    Ok((bytes, class))
}
