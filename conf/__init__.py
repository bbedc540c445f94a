# Lets tests import the entry scripts' config directory as a package (see tests/conftest.py).
