# One image for the three Catalens services; the command picks the role.
FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
WORKDIR /app
# The CPU build of torch first, so nothing below pulls a CUDA build. GPU images swap
# this line for a CUDA build of the same version.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install .
RUN useradd --create-home catalens
USER catalens
ENTRYPOINT ["catalens"]
