"""`python -m multienc`: placeholder until the command line lands."""
import multienc

print("multienc", multienc.__version__, multienc.build_info())
