//! ferrovent's reactor: the Rust half of a gevent-compatible library. See DESIGN.md, section 3.

use pyo3::prelude::*;

// The reactor is epoll (Linux) or kqueue (macOS, the BSDs) through mio's Unix fd API: say so at install time.
#[cfg(not(unix))]
compile_error!(
    "ferrovent runs on Linux, macOS and the BSDs only: its reactor needs epoll or kqueue (no Windows support)"
);

mod aio_handle_type;
mod aio_interest;
mod aio_loop;
mod aio_selector;
mod aio_transport;
mod cpython;
mod current;
mod event_loop;
mod fdtable;
mod fork_shared;
mod greenlet_api;
mod greenlet_new;
mod greenlet_run;
mod greenlet_spawn;
mod handover;
mod hashers;
mod http;
mod itemqueue;
mod linkable;
mod loadgen;
mod parking;
mod poll_bits;
mod poller;
mod ready;
mod run;
mod slots;
mod sockops;
mod timers;
mod type_version;
mod vectorcall;
mod wait;
mod waitqueue;
mod watchers;

/// Cargo's semver as a PEP 440 version ("0.1.0-alpha.1" becomes "0.1.0a1").
fn pep440_version() -> String {
    let version = env!("CARGO_PKG_VERSION");
    version.replace("-alpha.", "a").replace("-beta.", "b").replace("-rc.", "rc")
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    greenlet_api::init(py)?;
    cpython::init(py)?;
    m.add("__version__", pep440_version())?;
    m.add("POLLER", poller::SYSTEM_POLLER)?;
    m.add_class::<event_loop::Loop>()?;
    current::register(m)?;
    m.add_function(wrap_pyfunction!(cpython::frame_stack::small_frame_stacks, m)?)?;
    m.add_function(wrap_pyfunction!(cpython::arena_cache, m)?)?;
    m.add_class::<event_loop::ThreadsafeHandle>()?;
    m.add_class::<event_loop::Heartbeat>()?;
    waitqueue::register(m)?;
    linkable::register(m)?;
    itemqueue::register(m)?;
    m.add_class::<aio_selector::AioSelector>()?;
    aio_loop::register(m)?;
    aio_handle_type::register(m)?;
    aio_transport::register(m)?;
    m.add("TIMEOUT", event_loop::timeout_sentinel(py)?.clone_ref(py))?;
    m.add("BlockingSwitchOutError", py.get_type::<event_loop::BlockingSwitchOutError>())?;
    m.add("InvalidSwitchError", py.get_type::<event_loop::InvalidSwitchError>())?;
    m.add("InvalidThreadUseError", py.get_type::<event_loop::InvalidThreadUseError>())?;
    m.add("ConcurrentObjectUseError", py.get_type::<event_loop::ConcurrentObjectUseError>())?;
    greenlet_run::register(m)?;
    greenlet_spawn::register(m)?;
    m.add_function(wrap_pyfunction!(greenlet_new::build_greenlets_in_rust, m)?)?;
    handover::register(m)?;
    http::register(m)?;
    loadgen::register(m)?;
    sockops::register(m)?;
    watchers::register(m)?;
    Ok(())
}
