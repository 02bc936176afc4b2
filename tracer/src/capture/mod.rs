//! Load the embedded eBPF object, attach it per the plan, drain the ring buffer.
