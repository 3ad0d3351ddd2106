"""The runtime: a pure state transition made of modules (FRAME-like), each owning a storage
prefix, calls, errors, events and hooks. No I/O, no clock, no floats, no randomness."""
