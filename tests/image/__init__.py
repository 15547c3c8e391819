"""The stage image's test: deploy/Dockerfile built here, and both stages run in it by Bodywork.

`python -m tests.image` (tox's `image` environment) builds the image with buildah on a base made
from Debian's archive, then runs tests/image in a network namespace with only loopback; see
tests/image/__main__.py.
"""

# What `python -m tests.image` tells the tests about the image it built, through the environment.
STORAGE = "STAGE_IMAGE_STORAGE"  # the run's buildah storage folder
IMAGE = "STAGE_IMAGE_NAME"  # the image's name in it
RESULTS = "STAGE_IMAGE_RESULTS"  # a JSON file the tests add their measurements to
# Where `python -m tests.image` writes the image once the tests pass (CI pushes that file).
ARCHIVE = "STAGE_IMAGE_ARCHIVE"
