//! Key → Action (docs/architecture.md, "Inside the faces"): what a key means depends only on
//! whether a dialog or the filter line has the keyboard. Nothing here changes state.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Quit,
    /// 0-based screen index.
    Screen(usize),
    NextScreen,
    PrevScreen,
    Up,
    Down,
    Top,
    Bottom,
    /// A page down or up (PageDown/PageUp; Ctrl-d/Ctrl-u outside text fields).
    PageDown,
    PageUp,
    Enter,
    Back,
    Filter,
    /// A character typed into a text field.
    Char(char),
    Backspace,
    /// The caret of a text field, one character left or right (Home/End and Ctrl-A/Ctrl-E are
    /// `Top`/`Bottom` there).
    Left,
    Right,
    /// Ctrl-U in a text field: delete from the start of the line to the caret.
    ClearLine,
    /// Ctrl-W in a text field: delete the word before the caret.
    DeleteWord,
    /// `S`: sort the list by its next column.
    Sort,
    Backup,
    Verify,
    Restore,
    Prune,
    Delete,
    Drill,
    Cancel,
    /// Check the selected source (`keepsake source check`).
    Check,
    Help,
    /// Ctrl-C: leave (asks when an in-process job runs).
    Interrupt,
}

/// Who has the keyboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    /// The screens: single-key commands.
    Screens,
    /// A dialog with a list to pick from (arrows, Enter, Esc; `y`/`n` answer).
    Choice,
    /// A text field (filter, typed confirmation, database name): every printable key is text.
    Text,
}

/// The keys `key` stands for. Over SSH an Esc and the key after it arrive together, and the
/// terminal reads the pair as Alt+key: the console has no Alt bindings, so Alt+c is Esc, then
/// c (issue 27, item 6: `/ a b Esc 3` in one burst left the filter "ab3").
pub fn split_escape(key: KeyEvent) -> Vec<KeyEvent> {
    match key.code {
        KeyCode::Char(_) if key.modifiers.contains(KeyModifiers::ALT) => vec![
            KeyEvent::new_with_kind(KeyCode::Esc, KeyModifiers::NONE, key.kind),
            KeyEvent::new_with_kind(key.code, key.modifiers - KeyModifiers::ALT, key.kind),
        ],
        _ => vec![key],
    }
}

/// The action of `key`, if any.
pub fn action(key: KeyEvent, focus: Focus) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        return match key.code {
            KeyCode::Char('c') => Some(Action::Interrupt),
            KeyCode::Char('d') if focus != Focus::Text => Some(Action::PageDown),
            KeyCode::Char('u') if focus != Focus::Text => Some(Action::PageUp),
            // Readline's editing keys, as a shell user's fingers expect them.
            KeyCode::Char('u') => Some(Action::ClearLine),
            KeyCode::Char('w') => Some(Action::DeleteWord),
            KeyCode::Char('a') if focus == Focus::Text => Some(Action::Top),
            KeyCode::Char('e') if focus == Focus::Text => Some(Action::Bottom),
            _ => None,
        };
    }
    let common = match key.code {
        KeyCode::Esc => Some(Action::Back),
        KeyCode::Enter => Some(Action::Enter),
        KeyCode::Up => Some(Action::Up),
        KeyCode::Down => Some(Action::Down),
        KeyCode::Backspace => Some(Action::Backspace),
        KeyCode::Tab => Some(Action::NextScreen),
        KeyCode::BackTab => Some(Action::PrevScreen),
        KeyCode::PageDown => Some(Action::PageDown),
        KeyCode::PageUp => Some(Action::PageUp),
        KeyCode::Home => Some(Action::Top),
        KeyCode::End => Some(Action::Bottom),
        KeyCode::Left if focus == Focus::Text => Some(Action::Left),
        KeyCode::Right if focus == Focus::Text => Some(Action::Right),
        _ => None,
    };
    if common.is_some() {
        return common;
    }
    let KeyCode::Char(c) = key.code else {
        return None;
    };
    match focus {
        Focus::Text => Some(Action::Char(c)),
        Focus::Choice => match c {
            'j' => Some(Action::Down),
            'k' => Some(Action::Up),
            'g' => Some(Action::Top),
            'G' => Some(Action::Bottom),
            'q' => Some(Action::Back),
            c => Some(Action::Char(c)),
        },
        Focus::Screens => match c {
            'q' => Some(Action::Quit),
            '1'..='6' => Some(Action::Screen(c as usize - '1' as usize)),
            'j' => Some(Action::Down),
            'k' => Some(Action::Up),
            'g' => Some(Action::Top),
            'G' => Some(Action::Bottom),
            '/' => Some(Action::Filter),
            'b' => Some(Action::Backup),
            'v' => Some(Action::Verify),
            'r' => Some(Action::Restore),
            'p' => Some(Action::Prune),
            'd' => Some(Action::Delete),
            'D' => Some(Action::Drill),
            'c' => Some(Action::Cancel),
            's' => Some(Action::Check),
            'S' => Some(Action::Sort),
            '?' => Some(Action::Help),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    #[test]
    fn keys_mean_commands_on_screens_and_text_in_fields() {
        assert_eq!(
            action(k(KeyCode::Char('b')), Focus::Screens),
            Some(Action::Backup)
        );
        assert_eq!(
            action(k(KeyCode::Char('3')), Focus::Screens),
            Some(Action::Screen(2))
        );
        assert_eq!(
            action(k(KeyCode::Char('D')), Focus::Screens),
            Some(Action::Drill)
        );
        assert_eq!(
            action(k(KeyCode::Char('q')), Focus::Screens),
            Some(Action::Quit)
        );
        // In a text field, `q` and `b` are letters of a database name.
        assert_eq!(
            action(k(KeyCode::Char('q')), Focus::Text),
            Some(Action::Char('q'))
        );
        assert_eq!(
            action(k(KeyCode::Char('b')), Focus::Text),
            Some(Action::Char('b'))
        );
        // In a choice, `q` backs out instead of quitting.
        assert_eq!(
            action(k(KeyCode::Char('q')), Focus::Choice),
            Some(Action::Back)
        );
        assert_eq!(
            action(
                KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL),
                Focus::Text
            ),
            Some(Action::Interrupt)
        );
    }

    #[test]
    fn text_fields_take_readline_keys_and_lists_do_not() {
        let ctrl = |c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL);
        assert_eq!(action(ctrl('u'), Focus::Text), Some(Action::ClearLine));
        assert_eq!(action(ctrl('w'), Focus::Text), Some(Action::DeleteWord));
        assert_eq!(action(ctrl('a'), Focus::Text), Some(Action::Top));
        assert_eq!(action(ctrl('e'), Focus::Text), Some(Action::Bottom));
        assert_eq!(action(k(KeyCode::Left), Focus::Text), Some(Action::Left));
        assert_eq!(action(k(KeyCode::Home), Focus::Text), Some(Action::Top));
        // Outside a text field Ctrl-U pages, and the arrows left/right do nothing.
        assert_eq!(action(ctrl('u'), Focus::Screens), Some(Action::PageUp));
        assert_eq!(action(k(KeyCode::Left), Focus::Screens), None);
        assert_eq!(
            action(k(KeyCode::Char('S')), Focus::Screens),
            Some(Action::Sort)
        );
    }
}
