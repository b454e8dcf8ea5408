//! The task graph of a workflow: parents, children, descendants, and a
//! topological order. Built once per spec version and cached by the engine.

use std::collections::{BTreeMap, HashMap};

use crate::spec::WorkflowSpec;

/// Adjacency of a workflow's tasks, by task name.
#[derive(Debug, Clone, Default)]
pub struct Dag {
    parents: HashMap<String, Vec<String>>,
    children: HashMap<String, Vec<String>>,
    order: Vec<String>,
}

impl Dag {
    /// Builds the graph, or returns the tasks of one cycle in the order the
    /// edges run (`a -> b -> c -> a` is `["a", "b", "c"]`). Dependencies on
    /// unknown tasks are ignored here; validation reports them.
    pub fn new(spec: &WorkflowSpec) -> Result<Dag, Vec<String>> {
        let mut parents: HashMap<String, Vec<String>> = HashMap::new();
        let mut children: HashMap<String, Vec<String>> = HashMap::new();
        for (name, task) in &spec.tasks {
            children.entry(name.clone()).or_default();
            let ps = parents.entry(name.clone()).or_default();
            for dep in &task.depends_on {
                if spec.tasks.contains_key(dep) && !ps.contains(dep) {
                    ps.push(dep.clone());
                    children.entry(dep.clone()).or_default().push(name.clone());
                }
            }
        }
        let order = topo_order(&spec.tasks.keys().cloned().collect::<Vec<_>>(), &parents)?;
        Ok(Dag {
            parents,
            children,
            order,
        })
    }

    pub fn parents(&self, task: &str) -> &[String] {
        self.parents.get(task).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn children(&self, task: &str) -> &[String] {
        self.children.get(task).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Every task reachable from `task` through `children`, without `task` itself.
    pub fn descendants(&self, task: &str) -> Vec<String> {
        let mut seen: BTreeMap<&str, ()> = BTreeMap::new();
        let mut stack: Vec<&str> = self.children(task).iter().map(String::as_str).collect();
        while let Some(t) = stack.pop() {
            if seen.insert(t, ()).is_none() {
                stack.extend(self.children(t).iter().map(String::as_str));
            }
        }
        seen.into_keys().map(str::to_owned).collect()
    }

    /// Tasks ordered so that each comes after all of its parents.
    pub fn topo_order(&self) -> &[String] {
        &self.order
    }
}

/// Depth-first topological sort; on a cycle, returns the cycle's members.
fn topo_order(
    names: &[String],
    parents: &HashMap<String, Vec<String>>,
) -> Result<Vec<String>, Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut mark: HashMap<&str, Mark> = names.iter().map(|n| (n.as_str(), Mark::New)).collect();
    let mut order = Vec::with_capacity(names.len());
    for root in names {
        if mark[root.as_str()] != Mark::New {
            continue;
        }
        // Explicit stack of (task, next parent index) so deep DAGs cannot overflow.
        let mut path: Vec<(&str, usize)> = vec![(root.as_str(), 0)];
        mark.insert(root, Mark::Open);
        while let Some((task, i)) = path.last_mut() {
            let ps = parents.get(*task).map(Vec::as_slice).unwrap_or(&[]);
            if let Some(p) = ps.get(*i) {
                *i += 1;
                match mark[p.as_str()] {
                    Mark::New => {
                        mark.insert(p, Mark::Open);
                        path.push((p.as_str(), 0));
                    }
                    Mark::Open => {
                        // `p` is on the path: the cycle is path[p..], walked
                        // parent-wards, so reverse it to follow the edges.
                        let start = path.iter().position(|(t, _)| *t == p).unwrap_or(0);
                        let mut cycle: Vec<String> =
                            path[start..].iter().map(|(t, _)| t.to_string()).collect();
                        cycle.reverse();
                        return Err(cycle);
                    }
                    Mark::Done => {}
                }
            } else {
                let t = *task;
                mark.insert(t, Mark::Done);
                order.push(t.to_owned());
                path.pop();
            }
        }
    }
    Ok(order)
}
