//! Text models through the manager: found (or loaded) like any other model, and
//! held for as long as a generation streams, so a live stream is never evicted
//! or unloaded under its client.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::{Loaded, Manager, SlotState};
use crate::error::{CoreError, CoreResult};
use crate::generate::{
    Event, Finished, GenerateRequest, Generator, GeneratorInfo, Token, TokenSpan, TEXT_GENERATION,
};

/// A loaded text model, held.
pub struct TextModel {
    name: String,
    loaded: Arc<Loaded>,
}

impl TextModel {
    pub fn version(&self) -> u64 {
        self.loaded.version
    }

    fn generator(&self) -> &dyn Generator {
        self.loaded
            .model
            .generator()
            .expect("TextModel is only made for models with a generator")
    }

    pub fn info(&self) -> &GeneratorInfo {
        self.generator().info()
    }

    pub fn tokenize(&self, text: &str) -> CoreResult<Vec<TokenSpan>> {
        self.generator().tokenize(text)
    }

    pub async fn probe(&self) -> Result<(), String> {
        self.generator().probe().await
    }

    /// Starts a generation with the model's deadline for its length.
    pub fn start(&self, req: GenerateRequest) -> CoreResult<Generation> {
        req.sampling.validate()?;
        let started = Instant::now();
        let deadline = super::deadline_after(
            started,
            self.info().deadline_for(req.sampling.max_new_tokens),
        );
        let events = self.generator().start(&self.name, req, deadline)?;
        self.loaded.stats.generation_started();
        Ok(Generation {
            events,
            loaded: self.loaded.clone(),
            model: self.name.clone(),
            started,
            deadline,
            ended: false,
            first: true,
        })
    }
}

/// A running generation: its events, and the model held until it ends.
pub struct Generation {
    events: mpsc::Receiver<Event>,
    loaded: Arc<Loaded>,
    model: String,
    started: Instant,
    deadline: Instant,
    ended: bool,
    /// No token has come yet.
    first: bool,
}

impl Drop for Generation {
    fn drop(&mut self) {
        self.loaded.stats.generation_ended();
    }
}

/// A generation read to its end.
#[derive(Debug, Clone)]
pub struct Collected {
    pub text: String,
    pub tokens: Vec<Token>,
    pub finished: Finished,
}

impl Generation {
    /// The next event; None after the last one. The engine enforces the
    /// deadline; this only guards against one that stops answering.
    pub async fn next(&mut self) -> Option<Event> {
        if self.ended {
            return None;
        }
        let grace = self.deadline + std::time::Duration::from_secs(1);
        let event = match tokio::time::timeout_at(grace.into(), self.events.recv()).await {
            Ok(Some(e)) => e,
            Ok(None) => Event::Failed(CoreError::Backend {
                model: self.model.clone(),
                reason: "the generation ended without a result".into(),
            }),
            Err(_) => Event::Failed(CoreError::DeadlineExceeded {
                model: self.model.clone(),
                deadline: self.deadline - self.started,
            }),
        };
        if let Event::Token(_) = event {
            if std::mem::take(&mut self.first) {
                self.loaded.stats.record_first_token(self.started.elapsed());
            }
            self.loaded.stats.record_token();
        } else {
            self.ended = true;
            self.loaded
                .stats
                .record_request(matches!(event, Event::Done(_)), self.started.elapsed());
        }
        Some(event)
    }

    pub async fn collect(mut self) -> CoreResult<Collected> {
        let mut text = String::new();
        let mut tokens = Vec::new();
        while let Some(event) = self.next().await {
            match event {
                Event::Token(t) => {
                    text.push_str(&t.text);
                    tokens.push(t);
                }
                Event::Done(finished) => {
                    return Ok(Collected {
                        text,
                        tokens,
                        finished,
                    })
                }
                Event::Failed(e) => return Err(e),
            }
        }
        unreachable!("next() ends with Done or Failed before None")
    }
}

impl Manager {
    /// Finds (loading it if needed) a model that writes text.
    pub async fn text_model(&self, name: &str) -> CoreResult<TextModel> {
        let loaded = self.ready(name, None, true).await?;
        if loaded.model.generator().is_none() {
            return Err(CoreError::UnsupportedTask {
                model: name.into(),
                task: TEXT_GENERATION.into(),
                reason: format!(
                    "it runs on '{}', which does not write text",
                    self.info(name, None)?.config.backend
                ),
            });
        }
        Ok(TextModel {
            name: name.into(),
            loaded,
        })
    }

    /// The text models in the repository (by their config, without loading).
    pub fn text_model_names(&self) -> Vec<String> {
        self.lock()
            .models
            .iter()
            .filter(|(_, e)| {
                !e.deployed
                    && e.config
                        .as_ref()
                        .is_ok_and(|c| c.task.as_deref() == Some(TEXT_GENERATION))
            })
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// What a text model reports, if a version of it is in memory now.
    pub fn loaded_text_info(&self, name: &str) -> Option<GeneratorInfo> {
        let st = self.lock();
        st.models
            .get(name)?
            .versions
            .values()
            .rev()
            .find_map(|slot| match &slot.state {
                SlotState::Ready(l) => l.model.generator().map(|g| g.info().clone()),
                _ => None,
            })
    }

    pub async fn generate(&self, name: &str, req: GenerateRequest) -> CoreResult<Generation> {
        self.text_model(name).await?.start(req)
    }
}
