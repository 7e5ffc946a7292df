//! Test support: real `redis-server` processes for redplug tests.
