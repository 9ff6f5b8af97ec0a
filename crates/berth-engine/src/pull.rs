//! `docker pull`: an image from its registry into the store, then the
//! image's `pull` event.

use std::collections::BTreeMap;

use berth_image::reference::Reference;
use berth_registry::{progress::Reporter, Credentials, Platform, Pulled};

use crate::{Engine, Result};

impl Engine {
    /// Pull `reference` (a tag or a digest) for `platform` (`os/arch`, or
    /// empty for the host's), reporting progress to `report`.
    pub async fn pull(
        &self,
        reference: &str,
        platform: &str,
        creds: Option<Credentials>,
        report: Reporter,
    ) -> Result<(Reference, Pulled)> {
        let r = Reference::parse(reference).map_err(berth_image::Error::from)?.with_default_tag();
        let platform = Platform::parse(platform)?;
        let pulled = berth_registry::pull(&self.registries, self.images.clone(), &r, &platform, creds, report).await?;
        let attrs = BTreeMap::from([("name".to_owned(), r.familiar_name())]);
        self.events.publish("image", "pull", &r.familiar(), attrs);
        Ok((r, pulled))
    }
}
