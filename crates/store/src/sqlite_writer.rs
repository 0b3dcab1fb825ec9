//! The writer thread: owns the write connection and commits appends in groups.
