"""A simulated café in Linux network namespaces: demo, training and tests.

Everything the lab sends stays inside namespaces it created itself, on the
address ranges of DESIGN.md section 2.
"""
