//! Source integrity: a bare mirror kvmx-ci owns, hermetic git, signature
//! policies, the trust root, rollback protection, and the export of a
//! verified commit by its id.
