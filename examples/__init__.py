"""Example label repositories, shipped for `labelstore init DIR --example NAME`."""
