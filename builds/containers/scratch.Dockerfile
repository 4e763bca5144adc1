# The scratch form: the workload binary alone, started directly (exec form).
FROM scratch
COPY workload /workload
ENTRYPOINT ["/workload"]
