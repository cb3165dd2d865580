// Small helpers to build the pages: elements from a tag, attributes and children (text is always
// set as text, never parsed as HTML), and the shared pieces (face tiles, the photo dialog).

import { photoUrl, thumbnailUrl } from './api.js';

/** An element: `h('button', { type: 'button', onclick }, 'Save')`. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
    else if (name === 'dataset') Object.assign(element.dataset, value);
    else if (value === true) element.setAttribute(name, '');
    else element.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

/** Says `message` in the notice line (read out by screen readers). */
export function notify(message, isError = false) {
  const notice = document.getElementById('notice');
  notice.textContent = message;
  notice.classList.toggle('error', isError);
}

/** A face's name for people: its person's name, else "Unnamed person" or what keeps it out of one. */
export function personLabel(face) {
  if (face.person_name) return face.person_name;
  if (face.person_id) return 'Unnamed person';
  return 'No person yet';
}

/** A face's thumbnail image. */
export function thumbnail(face, alt) {
  return h('img', {
    src: thumbnailUrl(face.face_id),
    alt,
    width: 125,
    height: 125,
    loading: 'lazy',
    decoding: 'async',
  });
}

/** Opens the photo of `face` with every face of it boxed, in a modal dialog. */
export function openPhoto(face) {
  const close = () => dialog.close();
  const dialog = h(
    'dialog',
    { class: 'photo', 'aria-label': `Photo ${face.photo_name}` },
    h('img', { src: photoUrl(face.face_id), alt: `${face.photo_name} with its faces boxed` }),
    h('p', {}, face.image_uri),
    h('button', { type: 'button', onclick: close, autofocus: true }, 'Close'),
  );
  dialog.addEventListener('close', () => dialog.remove());
  dialog.addEventListener('click', (event) => {
    if (event.target === dialog) close();
  });
  document.body.append(dialog);
  dialog.showModal();
}

/** A percentage with no decimals. */
export const percent = (value) => `${Math.round(value * 100)} %`;
