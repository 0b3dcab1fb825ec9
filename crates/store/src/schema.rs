//! Schema migrations, embedded as numbered SQL strings.
