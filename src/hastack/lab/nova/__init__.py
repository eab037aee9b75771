"""The lab's stand-in for Nova (docs/compute.md, section 3): a small API with Nova's shapes for
the calls the evacuator makes (`api`), a compute service for the compute hosts (`compute`),
and instances as processes writing to the shared directory (`instance`)."""
