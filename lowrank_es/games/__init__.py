"""Social-dilemma games as pure, vmappable JAX functions."""
