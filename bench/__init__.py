"""Open-loop benchmark of the Fast Loans pipeline (`make bench`)."""
