// Pipeline: the run in this process (photos done of planned, rates, ETA, dead letters by kind)
// and the index's size, refreshed every second without reloading the page.

import { api } from './api.js';
import { h, notify } from './dom.js';

const REFRESH_MS = 1000;

export function pipelinePage(app) {
  const body = h('div', { 'aria-live': 'off' });
  app.replaceChildren(h('h1', {}, 'Pipeline'), body);
  let timer = null;
  let stopped = false;
  const refresh = async () => {
    try {
      render(body, await api.pipeline());
      notify('');
    } catch (error) {
      notify(error.message, true);
    }
    if (!stopped) timer = setTimeout(refresh, REFRESH_MS);
  };
  refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function render(body, { run, stages, index }) {
  const sections = [];
  if (stages) {
    sections.push(stagesSection(stages));
  } else if (run) {
    const kinds = Object.entries(run.dead_letters_by_kind);
    sections.push(
      h(
        'section',
        { 'aria-labelledby': 'run-title' },
        h('h2', { id: 'run-title' }, `Indexing ${run.archive}`),
        h('p', {}, phaseText(run)),
        h('progress', { max: Math.max(run.photos_planned, 1), value: run.photos_done, 'aria-label': 'Photos done' }),
        counters([
          ['photos_done', 'Photos done', `${run.photos_done} of ${run.photos_planned}`],
          ['photos_left', 'Photos left', Math.max(run.photos_planned - run.photos_done, 0)],
          ['photos_per_sec', 'Photos per second', run.photos_per_sec.toFixed(2)],
          ['faces', 'Faces found', run.faces],
          ['faces_per_sec', 'Faces per second', run.faces_per_sec.toFixed(2)],
          ['eta', 'Time left', run.eta_secs === null ? '–' : duration(run.eta_secs)],
          ['elapsed', 'Elapsed', duration(run.elapsed_secs)],
          ['dead_letters', 'Photos not indexed', run.dead_letters],
        ]),
        kinds.length
          ? h(
              'table',
              {},
              h('caption', {}, 'Photos not indexed, by reason'),
              h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Reason'), h('th', { scope: 'col' }, 'Photos'))),
              h('tbody', {}, kinds.map(([kind, count]) => h('tr', {}, h('td', {}, kind), h('td', {}, count)))),
            )
          : null,
      ),
    );
  } else {
    sections.push(
      h(
        'p',
        {},
        'No indexing run in this process. Run facedex index --http-listen ADDR to watch one here; ',
        'over Kafka, facedex status shows every stage.',
      ),
    );
  }
  sections.push(
    h(
      'section',
      { 'aria-labelledby': 'index-title' },
      h('h2', { id: 'index-title' }, 'Index'),
      counters([
        ['index_faces', 'Faces', index.faces],
        ['index_images', 'Photos with faces', index.images],
        ['index_people', 'People', index.people],
        ['index_memory', 'Memory', `${(index.memory_bytes / 1048576).toFixed(1)} MiB`],
        [
          'snapshot',
          'Last snapshot',
          index.snapshot_unix_ms ? `#${index.snapshot_generation}, ${new Date(index.snapshot_unix_ms).toLocaleString()}` : 'none yet',
        ],
      ]),
    ),
  );
  body.replaceChildren(...sections);
}

/** The distributed pipeline, as `facedex status` reports it (on an indexer's console). */
function stagesSection(stages) {
  const row = (name, done, perSec, lag, detail) =>
    h('tr', { dataset: { stage: name } }, h('th', { scope: 'row' }, name), h('td', {}, done), h('td', {}, perSec.toFixed(1)), h('td', {}, lag), h('td', {}, detail));
  const kinds = Object.entries(stages.dead_letters_by_kind).map(([kind, count]) => `${kind} ${count}`);
  const eta = stages.drained ? 'drained' : stages.eta_secs === null ? 'stalled' : duration(stages.eta_secs);
  return h(
    'section',
    { 'aria-labelledby': 'stages-title' },
    h('h2', { id: 'stages-title' }, 'Pipeline stages'),
    counters([
      ['eta', 'Time left', eta],
      ['dead_letters', 'Photos not indexed', stages.dead_letters],
    ]),
    h(
      'table',
      { class: 'stages' },
      h('caption', {}, `Rates over the last ${stages.interval_secs.toFixed(1)} s`),
      h(
        'thead',
        {},
        h('tr', {}, ['Stage', 'Done', 'Per second', 'Lag', ''].map((name) => h('th', { scope: 'col' }, name))),
      ),
      h(
        'tbody',
        {},
        row('enqueue', stages.enqueued, stages.enqueued_per_sec, '–', ''),
        row('ingest', stages.ingest.done, stages.ingest.per_sec, stages.ingest.lag, `${stages.ingest.topic} → ${stages.ingest.group}`),
        row('index', stages.indexer.done, stages.indexer.per_sec, stages.indexer.lag, `${stages.indexer.topic} → ${stages.indexer.group}`),
        row('dead letters', stages.dead_letters, stages.dead_letters_per_sec, '–', kinds.join(', ')),
      ),
    ),
    stages.last_enqueues.length
      ? h(
          'ul',
          { 'aria-label': 'Last enqueues' },
          stages.last_enqueues.slice(0, 5).map((run) => h('li', {}, `${run.archive}: ${run.plan}`)),
        )
      : null,
  );
}

function counters(rows) {
  return h(
    'dl',
    { class: 'counters' },
    rows.map(([key, label, value]) => h('div', { dataset: { counter: key } }, h('dt', {}, label), h('dd', {}, value))),
  );
}

function phaseText(run) {
  switch (run.phase) {
    case 'listing':
      return 'Listing the archive…';
    case 'indexing':
      return 'Indexing.';
    case 'finished':
      return 'Finished.';
    default:
      return 'Interrupted: the photos done so far are kept.';
  }
}

function duration(seconds) {
  const total = Math.round(seconds);
  const minutes = Math.floor(total / 60);
  return minutes ? `${minutes} min ${total % 60} s` : `${total} s`;
}
