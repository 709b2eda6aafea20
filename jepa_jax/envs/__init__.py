"""Built-in environments, written in pure JAX (jittable and vmappable)."""
