"""The decoding sandbox: every parse of an upload's bytes runs in a locked-down worker process.

Pillow, libjpeg, libpng, libwebp, libheif and LittleCMS are large C parsers with a history of memory-safety
bugs (libwebp's CVE-2023-4863 among them). The ingest process holds what would make one such bug a breach
of everyone: Vault's `datakey` and `decrypt` rights on every subject key, its S3 and NATS credentials and
the network. So the service never parses an upload itself; a pool of worker processes does, each of which:

- is a freshly exec'd interpreter (`python -I -B -m ingest.sandbox.worker`), never a fork of the service
  (a fork would copy its Vault token and data keys), with an almost empty environment and no descriptor
  but its channel (a Unix socket) and the shared memory the service created for it;
- sets its resource limits (address space, CPU time, no file writes, no core dumps, few descriptors),
  no-new-privileges and drops every capability; then decodes a tiny generated image of each format
  (`ingest.sandbox.warm_up`), so that every decoder library and lazily imported module is loaded; then
  installs an allow-list seccomp filter (`ingest.sandbox.syscall_filter`): no file can be opened, no
  socket made, nothing executed, no other process read, traced or signalled;
- only then reads uploads: bytes in and pixels out through the shared memory, a fixed-size request and
  reply through the channel (`ingest.sandbox.protocol`), parsed strictly by the service, never unpickled.

The service (`ingest.sandbox.pool.DecoderPool`) marks itself non-dumpable, checks each worker's state in
/proc before using it (seccomp in filter mode, no-new-privileges, no capabilities), kills a worker past
its timeout, recycles it after a number of jobs, replaces it when it crashes, and turns any failure into a
`corrupt_image` verdict.
"""
