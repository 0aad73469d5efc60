"""Documentation that is generated from the code (`make docs`), so it cannot drift: tests compare it."""
