//! `docker pull` and `docker push`: an image between its registry and the
//! store, then the image's `pull` or `push` event.

use std::collections::BTreeMap;

use berth_image::reference::Reference;
use berth_registry::{progress::Reporter, Credentials, Platform, Pulled, Pushed};

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
        let platform = if platform.is_empty() { None } else { Some(Platform::parse(platform)?) };
        let pulled =
            berth_registry::pull(&self.registries, self.images.clone(), &r, platform.as_ref(), creds, report).await?;
        let attrs = BTreeMap::from([("name".to_owned(), r.familiar_name())]);
        self.events.publish("image", "pull", &r.familiar(), attrs);
        Ok((r, pulled))
    }

    /// Push `name` with `tag` to its registry, or every tag of its
    /// repository when `tag` is empty; each pushed tag and its result.
    pub async fn push(
        &self,
        name: &str,
        tag: &str,
        creds: Option<Credentials>,
        report: Reporter,
    ) -> Result<Vec<(Reference, Pushed)>> {
        let base = Reference::parse(name).map_err(berth_image::Error::from)?;
        let refs: Vec<Reference> = if !tag.is_empty() {
            vec![base.with_tag(tag).map_err(berth_image::Error::from)?]
        } else if base.tag().is_some() {
            vec![base]
        } else {
            let store = self.images.clone();
            let name = base.name();
            let mut v: Vec<Reference> = tokio::task::spawn_blocking(move || store.names())
                .await
                .map_err(|e| crate::Error::Internal(e.to_string()))??
                .into_iter()
                .map(|(r, _)| r)
                .filter(|r| r.name() == name && r.tag().is_some())
                .collect();
            v.sort();
            if v.is_empty() {
                return Err(crate::Error::NotFound(format!(
                    "An image does not exist locally with the tag: {}",
                    base.familiar_name()
                )));
            }
            v
        };
        let mut out = vec![];
        for r in refs {
            if self.images.resolve(&r.to_string()).is_err() {
                return Err(crate::Error::NotFound(format!(
                    "An image does not exist locally with the tag: {}",
                    r.familiar()
                )));
            }
            let pushed =
                berth_registry::push(&self.registries, self.images.clone(), &r, creds.clone(), report.clone()).await?;
            let attrs = BTreeMap::from([("name".to_owned(), r.familiar_name())]);
            self.events.publish("image", "push", &r.familiar(), attrs);
            out.push((r, pushed));
        }
        Ok(out)
    }
}
