"""Pure-Python twin of the compiled kernel (filled by the kernel work)."""
