"""Study -> plain data -> figures and reports."""
