# FieldCRM in a container: the same code, its dependencies installed at build time (no bootstrap at run).
FROM python:3.11-slim
WORKDIR /app
COPY . .
RUN pip install --no-cache-dir ".[postgres,redis]" \
 && python -c "import bootstrap; bootstrap.compile_catalogues('python')"
ENV FIELDCRM_NO_BOOTSTRAP=1 DATA_DIR=/data HTTP_HOST=0.0.0.0 HTTP_PORT=8080
VOLUME /data
EXPOSE 8080
CMD ["python", "main.py", "run"]
