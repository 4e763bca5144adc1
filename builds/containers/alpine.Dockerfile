# The Alpine form: the same binary on an Alpine base (or its marked stand-in).
ARG BASE=alpine:3.20
FROM ${BASE}
COPY workload /usr/local/bin/workload
ENTRYPOINT ["/usr/local/bin/workload"]
